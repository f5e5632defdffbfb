"""``stylenet``: one command for everything the project runs (``python -m stylenet`` is the same).

Each subcommand is a module with ``add_arguments(parser)`` and ``run(args) -> exit code``; the
module's ``main(argv)`` runs it alone (``scripts/*.py`` and the tests call that) with the same parser.
"""
from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one line for the help); modules are imported when their command runs
COMMANDS = {
    "train": ("stylenet.cli.train", "train one model per norm for a painting, on the same batches"),
    "stylize": ("stylenet.cli.stylize", "apply trained styles to photos, clips and folders"),
    "optimize": ("stylenet.cli.optimize", "stylize one photo by optimization (Gatys et al., the slow reference)"),
    "export": ("stylenet.cli.export", "export a trained style to ONNX, checked against PyTorch"),
    "jobs": ("stylenet.jobs.cli", "training jobs in the background: train, list, cancel, resume, delete"),
    "app": ("stylenet.app.server", "serve the web app (BN vs IN, why IN?, video, train a style)"),
}


def parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``stylenet`` parser, with the flags of ``command`` only (the others' modules stay unimported)."""
    top = argparse.ArgumentParser(prog="stylenet", description="Fast neural style transfer with pluggable "
                                  "normalization: why Instance Norm beats Batch Norm.")
    sub = top.add_subparsers(dest="subcommand", required=True, metavar="COMMAND")
    for name, (module, summary) in COMMANDS.items():
        child = sub.add_parser(name, help=summary, description=summary[0].upper() + summary[1:] + ".")
        if name == command:
            cli = importlib.import_module(module)
            cli.add_arguments(child)
            child.set_defaults(run=cli.run)
    return top


def parse_args(command: str, argv: list[str] | None = None) -> argparse.Namespace:
    """``argv`` (default: the process's) parsed as ``stylenet COMMAND argv``: how each command's own
    ``main`` parses, so ``scripts/COMMAND.py`` and ``stylenet COMMAND`` take the same flags."""
    argv = sys.argv[1:] if argv is None else argv
    return parser(command).parse_args([command, *argv])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    args = parser(command if command in COMMANDS else None).parse_args(argv)
    return args.run(args)
