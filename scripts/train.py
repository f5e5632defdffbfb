"""``stylenet train`` from a checkout: python scripts/train.py --help (the code is stylenet/cli/train.py)."""
import sys

from stylenet.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
