"""`python -m harness setup`: install the host packages pinharness needs (idempotent)."""
from __future__ import annotations

import argparse

from harness.vm import host


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--check", action="store_true", help="only list what is missing; exit 1 if anything is")


def run(args: argparse.Namespace) -> int:
    if args.check:
        missing = host.missing_packages()
        print("missing: " + (" ".join(missing) if missing else "nothing"))
        return 1 if missing else 0
    installed = host.setup()
    if installed:
        print(f"pinharness: installed {' '.join(installed)}")
    return 0
