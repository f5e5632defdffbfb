"""Where stylenet reads and writes files, decided in one place.

Each location has an environment variable (read when asked, so a test or a launcher may set it)
and a flag on the commands that use it (``--weights-dir``, ``--models-dir``, ``--train-photos``).
No default points outside the repository or the installed package, except the user's cache folder.

=================  ========================  =====================================================
location           variable                  default
=================  ========================  =====================================================
shipped models     ``$STYLENET_WEIGHTS``     ``weights/`` of a checkout, else the installed copy
user models        ``$STYLENET_USER_MODELS`` ``CACHE/user_models``
cache              ``$STYLENET_CACHE``       ``$XDG_CACHE_HOME/stylenet`` or ``~/.cache/stylenet``
training photos    ``$STYLENET_DATA``        ``data/train`` of a checkout, else ``CACHE/data/train``;
                                             where that is missing, the example photos
examples           (none)                    ``examples/`` of a checkout, else the installed copy
figures            (none)                    ``docs/figures`` of a checkout (absent when installed)
=================  ========================  =====================================================
"""
from __future__ import annotations

import os
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
CHECKOUT = PACKAGE.parent  # the repository root when running from a checkout or an editable install
INSTALLED = PACKAGE / "shipped"  # weights/ and examples/ as package data (pyproject.toml)


def in_checkout() -> bool:
    """Whether this code runs from the repository (not from an installed wheel)."""
    return (CHECKOUT / "pyproject.toml").is_file() and (CHECKOUT / "stylenet").is_dir()


def _shipped(name: str) -> Path:
    """A folder shipped with the project: the checkout's, else the installed package's copy."""
    return CHECKOUT / name if in_checkout() else INSTALLED / name


def weights_dir() -> Path:
    """The shipped checkpoints and ``manifest.json``."""
    return Path(os.environ.get("STYLENET_WEIGHTS") or _shipped("weights"))


def examples_dir() -> Path:
    """Held-out example photos (the app's examples, the jobs' preview photo)."""
    return _shipped("examples")


def figures_dir() -> Path:
    """The measured figures and tables the app's report shows (only in a checkout)."""
    return CHECKOUT / "docs" / "figures"


def cache_dir() -> Path:
    """Converted VGG weights, user models, downloaded data."""
    if os.environ.get("STYLENET_CACHE"):
        return Path(os.environ["STYLENET_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "stylenet"


def user_models_dir() -> Path:
    """Styles trained in the app and their jobs (never inside the repository: see ``JobStore``)."""
    return Path(os.environ.get("STYLENET_USER_MODELS") or cache_dir() / "user_models")


def data_dir() -> Path:
    """The training photos new styles are trained on. Where the default folder does not exist (a fresh
    clone or install: the team's research photos are not shipped), the 17 freely licensed example
    photos (``examples/SOURCES.csv``), so a first job trains with no flags."""
    if os.environ.get("STYLENET_DATA"):
        return Path(os.environ["STYLENET_DATA"])
    default = CHECKOUT / "data" / "train" if in_checkout() else cache_dir() / "data" / "train"
    return default if default.is_dir() else examples_dir()
