"""The shipped checkpoints: ``weights/manifest.json`` lists every model by style and norm,
like torchvision's weight enums, so callers can say ``starry_night/instance`` instead of a path."""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from .paths import weights_dir

WEIGHTS_DIR = weights_dir()  # read once, at import: $STYLENET_WEIGHTS, else the shipped folder


FAST = "fast"  # the variant name of a slim distilled model: ``style/norm/fast``, ``<style>_<norm>_fast.safetensors``


def load_manifest(weights_dir: Path = WEIGHTS_DIR, variant: str = "full") -> list[dict[str, Any]]:
    """The manifest's model entries, those that are JSON objects (empty when no manifest exists yet).
    ``variant="fast"``: the slim students instead (``stylenet.distill``), listed apart under ``fast``
    so that every reader of ``models`` (report, evaluation, flicker) sees one model per style and norm."""
    path = Path(weights_dir) / "manifest.json"
    if not path.is_file():
        return []
    key = {"full": "models", FAST: FAST}[variant]
    return [entry for entry in json.loads(path.read_text()).get(key, []) if isinstance(entry, dict)]


def styles_in_grid_order(entries: list[dict[str, Any]]) -> list[str]:
    """The styles of manifest ``entries`` as the report's grid stacks them: the styles with the most
    models first (the fully compared ones on top), ties in manifest order. The report script draws the
    grid in this order and the app's report tab names its bands by it, so both read it from here."""
    counts: dict[str, int] = {}
    for entry in entries:
        counts[entry["style"]] = counts.get(entry["style"], 0) + 1
    return sorted(counts, key=lambda style: -counts[style])


def in_weights(weights_dir: Path, name: object) -> Path:
    """The file a manifest entry names (``file``, ``painting``), which must lie inside ``weights_dir``:
    ValueError for an absolute path, a ``..`` that climbs out, or anything that is not a name."""
    root = Path(weights_dir).resolve()
    if not isinstance(name, str) or not name:
        raise ValueError(f"{name!r} is not a file name")
    path = (root / name).resolve()
    if not path.is_relative_to(root):
        raise ValueError(f"{name} is outside the weights folder")
    return path


def resolve(ref: str | Path, weights_dir: Path = WEIGHTS_DIR) -> Path:
    """A checkpoint path from a path or a manifest name, ``style/norm`` (the full model) or
    ``style/norm/fast`` (its slim student); ValueError if neither."""
    if Path(ref).is_file():
        return Path(ref)
    shipped = {f"{e.get('style')}/{e.get('norm')}": e.get("file") for e in load_manifest(weights_dir)
               if not e.get("experiment")}
    shipped |= {f"{e.get('style')}/{e.get('norm')}/{FAST}": e.get("file") for e in load_manifest(weights_dir, FAST)}
    if str(ref) in shipped:
        return in_weights(weights_dir, shipped[str(ref)])
    names = ", ".join(shipped) or "none shipped"
    raise ValueError(f"{ref}: neither a checkpoint file nor a shipped model ({names})")


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file: how the manifest, a recipe's painting and a warm start are identified."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def total_steps(meta: dict[str, Any]) -> int:
    """Steps of training behind a model: its own, plus all those behind the checkpoint it warm-started
    from (which the trainer records as that checkpoint's total)."""
    return int(meta.get("steps") or 0) + int((meta.get("init") or {}).get("steps") or 0)


def build_manifest(weights_dir: Path = WEIGHTS_DIR) -> list[dict[str, Any]]:
    """Describe every model file in ``weights_dir`` (from its own metadata) and write manifest.json.

    Paintings are looked up in ``styles/`` with titles from ``styles/SOURCES.csv``; models trained
    on contrast-normalized photos are marked as experiments (the app does not offer them). The AdaIN
    decoder (``adain.DECODER_FILE``), one network for every painting, is described apart, under
    ``adain_decoder``, and so are the slim students of ``stylenet.distill`` (their metadata holds
    ``distill``), under ``fast``: ``models`` lists one full model per style and norm, which is what every
    reader expects.
    """
    import csv

    from .adain import DECODER_FILE, read_adain_metadata
    from .checkpoint import is_side_file, read_metadata

    weights_dir = Path(weights_dir)
    titles: dict[str, str] = {}
    sources = weights_dir / "styles" / "SOURCES.csv"
    if sources.is_file():
        with open(sources, newline="") as f:
            titles = {Path(row["file"]).stem: row["painting"] for row in csv.DictReader(f)}
    models, fast = [], []
    for path in sorted(weights_dir.glob("*.safetensors")):
        if is_side_file(path) or path.name == DECODER_FILE:
            continue
        meta = read_metadata(path)
        if "distill" in meta:  # a slim student: described by its teacher and how it learned
            entry = fast_entry(path, meta)
            teacher = weights_dir / entry["teacher"]
            if (meta.get("recipe") or {}).get("contrast_normalize"):
                print(f"{path.name} is left out of the manifest: a student of an experiment", file=sys.stderr)
            elif teacher.is_file() and sha256_file(teacher) == entry["teacher_sha256"]:
                twin = next((e["file"] for e in fast if (e["style"], e["norm"]) == (entry["style"], entry["norm"])), None)
                if twin:
                    raise ValueError(f"{path.name} and {twin} are both {entry['style']}/{entry['norm']}/{FAST}: keep one")
                fast.append(entry)
            else:  # its teacher was retrained or removed: it is not the fast version of what ships
                print(f"{path.name} is left out of the manifest: {entry['teacher']} is not the model it learned "
                      "from (distill it again)", file=sys.stderr)
            continue
        recipe = meta.get("recipe", {})
        absolute = [f"{k}={v}" for k, v in recipe.items() if isinstance(v, str) and Path(v).is_absolute()]
        if absolute:
            raise ValueError(f"{path.name}: recipe holds absolute paths of the training machine "
                             f"({', '.join(absolute)}); re-save it with names only")
        entry = {"style": meta["style"], "norm": meta["norm"], "file": path.name,
                 "title": titles.get(meta["style"], meta["style"]), "width": meta["width"],
                 "steps": meta.get("steps"), "total_steps": total_steps(meta), "recipe": recipe,
                 "final_losses": meta.get("final_losses"),
                 "training_set": meta.get("training_set"), "init": meta.get("init"),
                 "sha256": sha256_file(path), "bytes": path.stat().st_size}
        if (weights_dir / "styles" / f"{meta['style']}.jpg").is_file():
            entry["painting"] = f"styles/{meta['style']}.jpg"
        if path.with_suffix(".csv").is_file():
            entry["log"] = path.with_suffix(".csv").name
        if recipe.get("contrast_normalize"):
            entry["experiment"] = "contrast_normalize"
        models.append(entry)
    manifest: dict[str, Any] = {"models": models}
    if fast:
        manifest[FAST] = fast
    decoder = weights_dir / DECODER_FILE
    if decoder.is_file():
        meta = read_adain_metadata(decoder)
        manifest["adain_decoder"] = {"file": DECODER_FILE, "width": meta["width"], "steps": meta.get("step"),
                                     "recipe": meta.get("recipe"), "hold_out": meta.get("hold_out"),
                                     "paintings": len(meta.get("paintings") or []), "sha256": sha256_file(decoder),
                                     "bytes": decoder.stat().st_size}
    (weights_dir / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return models


def fast_entry(path: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """The manifest's entry for a slim student: its style, norm, width and blocks, its teacher (file name and
    sha256) and how long it learned; its ``recipe`` stays in the file (the teacher's, which made the
    pictures it learned)."""
    distill = meta["distill"]
    entry = {"style": meta["style"], "norm": meta["norm"], "variant": FAST, "file": path.name, "width": meta["width"],
             "blocks": meta["blocks"],
             "steps": meta.get("steps"), "teacher": distill["teacher"], "teacher_sha256": distill["teacher_sha256"],
             "teacher_width": distill["teacher_width"], "final_losses": meta.get("final_losses"),
             "sha256": sha256_file(path), "bytes": path.stat().st_size}
    if path.with_suffix(".csv").is_file():
        entry["log"] = path.with_suffix(".csv").name
    return entry
