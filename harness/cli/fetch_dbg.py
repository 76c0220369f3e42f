"""`python -m harness fetch-dbg --kernel debian:6.1`: the -dbg vmlinux and the debug
modules of the file systems and pin drivers, for symbolized reports (~860 MB download,
kept as ~0.7 GB; never needed by CI)."""
from __future__ import annotations

import argparse

from harness.vm import kernel as kernel_mod
from harness.errors import KernelError
from harness.vm.host import Paths


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kernel", action="append", default=[], metavar="SPEC",
                   help="Debian kernel(s): debian:6.1, debian:6.12 (default: both)")


def run(args: argparse.Namespace) -> int:
    paths = Paths.default()
    for spec in args.kernel or list(kernel_mod.DEFAULT_KERNELS):
        if not spec.startswith("debian:"):
            raise KernelError(f"fetch-dbg is for Debian kernels (debian:6.1...), not {spec}: "
                              "a built tree's own vmlinux already has DWARF")
        k = kernel_mod.resolve(spec, paths)
        vmlinux, modules = kernel_mod.debian_dbg(k, paths)
        print(f"{spec}: {vmlinux} (+ debug modules in {modules})")
    return 0
