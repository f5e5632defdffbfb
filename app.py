"""stylenet web app: BN and IN side by side, and a "why IN?" explorer.

    python app.py [--host 127.0.0.1] [--port 7860] [--share] [--weights-dir DIR] [--models-dir DIR]

The same as ``stylenet app``; the app itself lives in ``stylenet/app/``.
"""
import sys

from stylenet.app.server import main

if __name__ == "__main__":
    sys.exit(main())
