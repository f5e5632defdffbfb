"""``python -m stylenet``: the ``stylenet`` command."""
import sys

from .cli import main

sys.exit(main())
