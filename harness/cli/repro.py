"""`python -m harness repro RESULTS_DIR/CELL [--out DIR]`: a finding as a reproducer a kernel
developer runs without pinharness: repro.c, repro.sh, qemu.sh (+ init.sh), REPORT.md, and a
.tar.gz of them. CELL is one cell's directory of a run (results/<run>/<cell>/) or of pytest's
artifacts (artifacts/matrix/<cell>/)."""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from harness.errors import HarnessError
from harness.pins import repro
from harness.pins.repro.finding import config_options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("cell", type=Path, metavar="RESULTS_DIR/CELL", help="the directory of one cell (with cell.json)")
    parser.add_argument("--out", type=Path, default=Path("."), metavar="DIR",
                        help="where repro-<cell>/ and repro-<cell>.tar.gz go (default: the current directory)")
    parser.add_argument("--kernel", metavar="SPEC",
                        help="the kernel to name when the cell predates kernel.json (default: debian:<its release>)")


def _with_kernel(f: repro.Finding, spec: str) -> repro.Finding:
    from harness.vm.host import Paths
    from harness.vm.kernel import resolve

    kernel = resolve(spec, Paths.default(), log=lambda s: None)
    if f.release and kernel.release != f.release:
        raise HarnessError(f"--kernel {spec} is {kernel.release}, the cell ran {f.release}: name the same kernel")
    return replace(f, kernel=kernel.record(config_options(f.workload)))


def run(args: argparse.Namespace) -> int:
    finding = repro.load(args.cell)
    if args.kernel or not finding.kernel:
        if not args.kernel and not finding.kernel_spec.startswith("debian:"):
            raise HarnessError(f"{args.cell} has no kernel.json (an older run): give --kernel SPEC for {finding.release}")
        finding = _with_kernel(finding, args.kernel or f"debian:{finding.release}")
    out = repro.export(finding, args.out)
    for name, size in sorted(out.sizes.items()):
        print(f"  {name:14} {size:>8} bytes")
    print(f"{out.directory}/ ({out.total} bytes), {out.tarball} ({out.tarball.stat().st_size} bytes)")
    print(f"reproduce: cd {out.directory} && ./qemu.sh")
    return 0
