"""`python -m harness run`: the pin matrix (kernels × workloads × fs × stressors)."""
from __future__ import annotations

import argparse
from concurrent.futures import ThreadPoolExecutor
import sys
import time
from pathlib import Path

from harness.vm import kernel as kernel_mod
from harness.results import model as results_mod
from harness.results.compare import compare
from harness.vm.host import Paths
from harness.errors import HarnessError, named_enospc
from harness.vm.image import MKFS, build_rootfs
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
                   help="kernel (repeatable): debian:6.1, debian:6.12, a bzImage path, tree:PATH "
                        f"(default: {' and '.join(kernel_mod.DEFAULT_KERNELS)})")
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


def say(message: str) -> None:
    """Harness messages go to stderr; stdout carries the results table (and guest output in `boot`)."""
    print(message, file=sys.stderr, flush=True)


def check_fs_names(fss: list[str]) -> None:
    unknown = [f for f in fss if f not in MKFS]
    if unknown:
        raise HarnessError(f"unknown file system {unknown[0]!r}: use one of {', '.join(MKFS)}")


def run(args: argparse.Namespace) -> int:
    paths = Paths.default()
    specs = args.kernel or list(kernel_mod.DEFAULT_KERNELS)
    fss = args.fs or ["ext4", "xfs"]
    check_fs_names(fss)  # every name is checked before anything is built or booted
    matrix = cells(specs, args.workload or list(WORKLOADS), fss, args.stressor)
    if args.shard:
        matrix = args.shard.select(matrix)
    previous = results_mod.load(args.previous) if args.previous else None
    out = args.out or Path("results") / time.strftime("%Y%m%d-%H%M%S")
    with named_enospc(out, "the results directory"):
        out.mkdir(parents=True, exist_ok=True)
    say(f"pinharness: {len(matrix)} cells -> {out}")
    done: list = []
    meta: dict = {"cells_planned": len(matrix)}
    t0 = time.monotonic()
    try:
        image = build_rootfs(paths, log=say)
        kernels = {s: kernel_mod.resolve(s, paths, log=say) for s in specs}
        accel = pick_accel(args.accel, kernels[specs[0]], paths, out / "_accel", say)
        say(f"pinharness: accelerator {accel.accel} ({accel.reason})")
        meta.update({"kernels": {s: k.describe() for s, k in kernels.items()}, "accel": accel.accel,
                     "accel_reason": accel.reason})

        def one(i: int, cell):
            say(f"[{i}/{len(matrix)}] {cell.id} ...")
            res = run_cell(cell, kernels[cell.kernel], image, paths, out, accel,
                           VMOptions(memory_mb=args.memory, accel=args.accel), pages=args.pages, log=say)
            say(f"[{i}/{len(matrix)}] {cell.id}: {res.outcome or res.detail} -> {res.status} ({res.seconds:.0f}s)")
            return res

        with named_enospc(out, "the cells' logs and results"):  # cell.json, console logs, scratch disks
            if args.jobs <= 1:
                for i, cell in enumerate(matrix, 1):
                    done.append(one(i, cell))
            else:  # each worker thread boots, uses and reaps its own guest
                pool = ThreadPoolExecutor(max_workers=args.jobs, thread_name_prefix="cell")
                try:
                    for fut in [pool.submit(one, i, cell) for i, cell in enumerate(matrix, 1)]:
                        done.append(fut.result())
                finally:
                    pool.shutdown(wait=False, cancel_futures=True)  # on Ctrl-C: no new cells
    except BaseException as exc:
        meta["interrupted"] = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
        _remove_scratch_images(out, matrix)
        if done:  # the cells that finished keep their results, whatever stopped the rest
            try:
                _write_results(done, out, meta, t0, args, previous)
                say(f"pinharness: run stopped after {len(done)} of {len(matrix)} cells; their results: "
                    f"{out / 'results.json'}")
            except HarnessError as write_err:
                say(f"pinharness: warning: could not write the partial results: {write_err}")
        raise
    written, extra = _write_results(done, out, meta, t0, args, previous)
    print(results_mod.table(done))
    if previous is not None:
        print(f"\nsince {args.previous}: {compare(previous, written).summary()}")
    for fmt, path in extra.items():
        print(f"{fmt}: {path}")
    print(f"\nresults: {out / 'results.json'}  junit: {out / 'junit.xml'}  logs: {out}/<cell>/")
    bad = [r for r in done if not r.ok and r.status != "SKIP"]
    return 1 if bad else 0


def _write_results(done: list, out: Path, meta: dict, t0: float, args: argparse.Namespace,
                   previous) -> tuple[results_mod.RunResults, dict[str, Path]]:
    meta = {**meta, "seconds": round(time.monotonic() - t0, 1)}
    if args.shard:
        meta["shard"] = str(args.shard)
    results_mod.write_json(done, out / "results.json", meta)
    results_mod.write_junit(done, out / "junit.xml")
    written = results_mod.load(out / "results.json")
    extra = write_outputs(written, out, [f for f in ("ktap", "kcidb", "html") if getattr(args, f)],
                          OutputOptions(previous))
    return written, extra


def _remove_scratch_images(out: Path, matrix) -> None:
    """An interrupted cell's scratch images (512 MB each) are not results: remove them."""
    for cell in matrix:
        for img in (out / cell.id).glob("*.img"):
            img.unlink(missing_ok=True)
