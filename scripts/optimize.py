"""``stylenet optimize`` from a checkout: python scripts/optimize.py --help (the code is stylenet/cli/optimize.py)."""
import sys

from stylenet.cli.optimize import main

if __name__ == "__main__":
    sys.exit(main())
