"""``stylenet export`` from a checkout: python scripts/export.py --help (the code is stylenet/cli/export.py)."""
import sys

from stylenet.cli.export import main

if __name__ == "__main__":
    sys.exit(main())
