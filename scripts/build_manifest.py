"""Rewrite weights/manifest.json from the model files' own metadata: python scripts/build_manifest.py"""
from __future__ import annotations

import sys
from pathlib import Path

from stylenet.weights import WEIGHTS_DIR, build_manifest

if __name__ == "__main__":
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else WEIGHTS_DIR
    for m in build_manifest(folder):
        print(f"{m['style']}/{m['norm']}: {m['file']} ({m['bytes'] / 1e6:.1f} MB, {m['steps']} steps)")
