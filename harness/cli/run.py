"""`python -m harness run`: the pin matrix (kernels × workloads × fs × stressors)."""
from __future__ import annotations

import argparse
from concurrent.futures import ThreadPoolExecutor
import sys
import time
from pathlib import Path

from harness.kbuild import debian_src
from harness.vm import kernel as kernel_mod
from harness.results import model as results_mod
from harness.results.compare import compare
from harness.vm.host import Paths
from harness.vm.image import build_rootfs
from harness.pins.matrix import cells, run_cell
from harness.results.outputs import FORMATS, OutputOptions, write_outputs
from harness.results.shard import shard_arg
from harness.pins.stressors import STRESSORS
from harness.vm.vm import VMOptions, pick_accel
from harness.pins.workloads import WORKLOADS


def _csv(value: str) -> list[str]:
    return [v for v in value.split(",") if v]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kernel", action="append", default=[], metavar="SPEC",
                   help="kernel (repeatable): debian:LINE (6.1, 6.12, 7.2), debian:SUITE (bookworm, trixie, "
                        "sid, experimental), debian:RELEASE, debian-src:LINE (Debian's linux-source built base+pins), "
                        "a bzImage/vmlinux path, tree:PATH "
                        f"(default: {', '.join(kernel_mod.DEFAULT_KERNELS)})")
    p.add_argument("--modules", type=Path, help="modules directory (lib/modules/<release>) for a --kernel image path")
    p.add_argument("--refresh", action="store_true", help="read Debian's package indexes anew (else once a day)")
    p.add_argument("--fs", type=_csv, action="extend", default=None,
                   help="file systems, comma-separated or repeated (default ext4,xfs)")
    p.add_argument("--workload", type=_csv, action="extend", default=None,
                   help=f"workloads, comma-separated or repeated (default: all: {','.join(WORKLOADS)})")
    p.add_argument("--stressor", action="append", default=None, metavar="A+B",
                   help=f"stressor set (repeatable; combine with +): {', '.join(STRESSORS)} "
                        "(default: each workload's own)")
    p.add_argument("--accel", default="auto", choices=("auto", "kvm", "tcg"))
    p.add_argument("--memory", type=int, default=1024, metavar="MB", help="guest memory (default 1024)")
    p.add_argument("--pages", type=int, default=16, help="pages of the pinned file (default 16)")
    p.add_argument("--out", type=Path, default=None,
                   help="results directory (default: results/<timestamp>): results.json, junit.xml, logs")
    p.add_argument("--shard", type=shard_arg, default=None, metavar="I/N",
                   help="run only shard I of N: the cells sorted by id, every N-th from the I-th (CI runners)")
    for fmt in ("ktap", "kcidb", "html"):
        p.add_argument(f"--{fmt}", action="store_true", help=f"also write {FORMATS[fmt][0]} into --out")
    p.add_argument("--jobs", "-j", type=int, default=1, metavar="N",
                   help="guests at once (default 1; each cell has its own ports, sockets and directories)")
    p.add_argument("--previous", type=Path, metavar="OLD.json",
                   help="a previous run's results: 'since last run' in --html, and a comparison printed")


def run(args: argparse.Namespace) -> int:
    paths = Paths.default()
    specs = args.kernel or list(kernel_mod.DEFAULT_KERNELS)
    matrix = cells(specs, args.workload or list(WORKLOADS), args.fs or ["ext4", "xfs"], args.stressor)
    if args.shard:
        matrix = args.shard.select(matrix)
    previous = results_mod.load(args.previous) if args.previous else None
    out = args.out or Path("results") / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    print(f"pinharness: {len(matrix)} cells -> {out}", file=sys.stderr)
    image = build_rootfs(paths)
    kernels = {s: debian_src.resolve_spec(s, paths, modules=args.modules, refresh=args.refresh) for s in specs}
    accel = pick_accel(args.accel, kernels[specs[0]], paths, out / "_accel")
    print(f"pinharness: accelerator {accel.accel} ({accel.reason})", file=sys.stderr)
    t0 = time.monotonic()

    def one(i: int, cell):
        print(f"[{i}/{len(matrix)}] {cell.id} ...", file=sys.stderr, flush=True)
        res = run_cell(cell, kernels[cell.kernel], image, paths, out, accel,
                       VMOptions(memory_mb=args.memory, accel=args.accel), pages=args.pages,
                       log=lambda s: print(s, file=sys.stderr))
        print(f"[{i}/{len(matrix)}] {cell.id}: {res.outcome or res.detail} -> {res.status} ({res.seconds:.0f}s)",
              file=sys.stderr, flush=True)
        return res

    if args.jobs <= 1:
        done = [one(i, cell) for i, cell in enumerate(matrix, 1)]
    else:  # each worker thread boots, uses and reaps its own guest
        with ThreadPoolExecutor(max_workers=args.jobs, thread_name_prefix="cell") as pool:
            done = list(pool.map(one, range(1, len(matrix) + 1), matrix))
    meta = {"kernels": {s: k.describe() for s, k in kernels.items()}, "accel": accel.accel,
            "accel_reason": accel.reason, "seconds": round(time.monotonic() - t0, 1)}
    if args.shard:
        meta["shard"] = str(args.shard)
    results_mod.write_json(done, out / "results.json", meta)
    results_mod.write_junit(done, out / "junit.xml")
    written = results_mod.load(out / "results.json")
    extra = write_outputs(written, out, [f for f in ("ktap", "kcidb", "html") if getattr(args, f)],
                          OutputOptions(previous))
    print(results_mod.table(done))
    if previous is not None:
        print(f"\nsince {args.previous}: {compare(previous, written).summary()}")
    for fmt, path in extra.items():
        print(f"{fmt}: {path}")
    print(f"\nresults: {out / 'results.json'}  junit: {out / 'junit.xml'}  logs: {out}/<cell>/")
    bad = [r for r in done if not r.ok and r.status != "SKIP"]
    return 1 if bad else 0
