"""`python -m harness build`: build a kernel tree out of tree with kernel-configs/ fragments."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from harness.kbuild import build as build_mod
from harness.vm.arch import ARCHES
from harness.vm.host import Paths


def _csv(value: str) -> list[str]:
    return [v for v in value.split(",") if v]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tree", type=Path, required=True, help="kernel source tree (only read: the build goes to --out)")
    p.add_argument("--config", type=_csv, default=list(build_mod.DEFAULT_CONFIGS), metavar="A,B",
                   help="fragments merged onto `make ARCH=x86_64 tinyconfig`, in order: names in kernel-configs/ "
                        "(base, pins, debug) or paths (default: %(default)s)")
    p.add_argument("--arch", default=build_mod.ARCH, choices=tuple(ARCHES),
                   help="kernel architecture (default: %(default)s); arm64 is cross-compiled with "
                        "aarch64-linux-gnu-gcc and gets kernel-configs/arm64.config too")
    p.add_argument("--out", type=Path, default=None,
                   help="O= build directory (default: one stable directory per tree and fragment set in the cache)")
    p.add_argument("--jobs", "-j", type=int, default=0, help="make -j (default: number of CPUs)")
    p.add_argument("--no-ccache", action="store_true", help="do not compile through ccache even when installed")
    p.add_argument("--timeout", type=float, default=4 * 3600, help="give up after this many seconds (default 4 h)")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")


def run(args: argparse.Namespace) -> int:
    paths = Paths.default()
    tree = build_mod.check_tree(args.tree, args.arch)
    out = args.out or build_mod.default_out(tree, args.config, paths, args.arch)
    req = build_mod.BuildRequest(tree, out, tuple(args.config), args.jobs, not args.no_ccache, args.timeout,
                                 arch=args.arch)
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    kernel, res = build_mod.build_kernel(req, paths, log)
    if args.json:
        print(json.dumps({**res.to_dict(), "kernel": kernel.describe()}, indent=1))
    else:
        print(f"kernel {kernel.release}: {res.image}")
        print(f"build dir: {res.out}  (boot it: python -m harness boot --kernel tree:{res.out})")
        print(f"time: {res.seconds:.0f}s wall, {res.cpu_seconds:.0f} CPU-s")
        if res.missing:
            print(f"{len(res.missing)} requested options did not survive:")
            for m in res.missing:
                print(f"  {m.line()}")
        else:
            print("every requested option is set")
    return 0
