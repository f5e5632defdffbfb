"""Serve the web app (BN vs IN, why IN?, video, train a style): python app.py --help

The same as ``stylenet app`` (every flag of it); the app itself lives in ``stylenet/app/``.
"""
import sys

from stylenet.app.server import main

if __name__ == "__main__":
    sys.exit(main())
