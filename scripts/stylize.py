"""``stylenet stylize`` from a checkout: python scripts/stylize.py --help (the code is stylenet/cli/stylize.py)."""
import sys

from stylenet.cli.stylize import main

if __name__ == "__main__":
    sys.exit(main())
