"""The command-line front-end: `python -m harness <command>`, one module per command.

Each command module exposes ``add_arguments(parser)`` and ``run(args) -> int``; ``main`` holds the
one argparse parser (help and docs come from it) and turns ``HarnessError`` into a one-line error.
"""
from harness.cli.parser import main

__all__ = ["main"]
