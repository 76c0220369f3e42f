"""`python -m harness run`: the pin matrix (kernels × workloads × fs × stressors)."""
from __future__ import annotations

import argparse
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
import time
from pathlib import Path
from typing import Optional, Sequence

from harness.kbuild import debian_src
from harness.vm import kernel as kernel_mod
from harness.vm.arch import ARCHES, with_arch
from harness.results import model as results_mod
from harness.results.compare import compare
from harness.vm.host import Paths
from harness.errors import HarnessError, named_enospc
from harness.vm.image import MKFS, build_rootfs
from harness.cli.progress import Progress
from harness.pins.confirm import ConfirmPolicy, confirm
from harness.pins.matrix import Cell, CellResult, LeftOut, cells, needs, run_cell, split_runnable
from harness.results.outputs import FORMATS, OutputOptions, write_outputs
from harness.results.shard import shard_arg
from harness.pins.stressors import STRESSORS
from harness.vm.vm import VMOptions, pick_accel
from harness.pins.workloads import DEFAULT_WORKLOADS, WORKLOADS


# A TCG guest is one busy thread: on 2 cores the default matrix took 9m39s with --jobs 2 and 18m14s
# with --jobs 1 (42 cells, same outcomes). More than 4 at once has not been measured.
MAX_DEFAULT_JOBS = 4


def default_jobs() -> int:
    return max(1, min(MAX_DEFAULT_JOBS, os.cpu_count() or 1))


def _csv(value: str) -> list[str]:
    return [v for v in value.split(",") if v]


def _count(value: str) -> int:
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"{value!r} is not a count: use 0, 1, 2, ...")
    return int(value)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kernel", action="append", default=[], metavar="SPEC",
                   help="kernel (repeatable): debian:LINE (6.1, 6.12, 7.2), debian:SUITE (bookworm, trixie, "
                        "sid, experimental), debian:RELEASE, debian-src:LINE (Debian's linux-source built base+pins), "
                        "a bzImage/vmlinux path, tree:PATH "
                        f"(default: {', '.join(kernel_mod.DEFAULT_KERNELS)})")
    p.add_argument("--arch", type=_csv, action="extend", default=None, metavar="A,B",
                   help=f"guest architectures (repeatable, comma-separated): {', '.join(ARCHES)}; every --kernel runs "
                        "on each (default: x86_64; a spec may also end in @arm64, e.g. debian:6.1@arm64)")
    p.add_argument("--modules", type=Path, help="modules directory (lib/modules/<release>) for a --kernel image path")
    p.add_argument("--refresh", action="store_true", help="read Debian's package indexes anew (else once a day)")
    p.add_argument("--fs", type=_csv, action="extend", default=None,
                   help="file systems, comma-separated or repeated (default ext4,xfs)")
    p.add_argument("--workload", type=_csv, action="extend", default=None,
                   help=f"workloads, comma-separated or repeated: {', '.join(WORKLOADS)} "
                        f"(default: {','.join(DEFAULT_WORKLOADS)})")
    p.add_argument("--stressor", action="append", default=None, metavar="A+B",
                   help=f"stressor set (repeatable; combine with +): {', '.join(STRESSORS)} "
                        "(default: each workload's own)")
    p.add_argument("--accel", default="auto", choices=("auto", "kvm", "tcg"))
    p.add_argument("--memory", type=int, default=1024, metavar="MB", help="guest memory (default 1024)")
    p.add_argument("--no-snapshot", action="store_true", help="boot every guest afresh (default: restore a snapshot of a booted guest, saved on first use)")
    p.add_argument("--pages", type=int, default=16, help="pages of the pinned file (default 16)")
    p.add_argument("--out", type=Path, default=None,
                   help="results directory (default: results/<timestamp>): results.json, junit.xml, logs")
    p.add_argument("--shard", type=shard_arg, default=None, metavar="I/N",
                   help="run only shard I of N: the cells sorted by id, every N-th from the I-th (CI runners)")
    for fmt in ("ktap", "kcidb", "html"):
        p.add_argument(f"--{fmt}", action="store_true", help=f"also write {FORMATS[fmt][0]} into --out")
    p.add_argument("--jobs", "-j", type=int, default=default_jobs(), metavar="N",
                   help=f"guests at once (default: the CPUs, at most {MAX_DEFAULT_JOBS}: {default_jobs()} here; each cell "
                        "has its own ports, sockets and directories)")
    p.add_argument("--previous", type=Path, metavar="OLD.json",
                   help="a previous run's results: 'since last run' in --html, and a comparison printed")
    p.add_argument("--confirm", type=_count, default=2, metavar="N",
                   help="run a cell the oracle did not expect N more times, each in a fresh guest (default 2): "
                        "a surprise seen again fails the run, 'UNEXPECTED (reproduced 3/3)'; one seen once does "
                        "not, 'FLAKY (1/3)'; 0 believes the first run")
    p.add_argument("--confirm-known", type=_count, default=None, metavar="N",
                   help="more runs of a KNOWN-BUG cell, for its reproduction rate (default: as --confirm)")
    p.add_argument("--all", action="store_true",
                   help="also the cells the kernels cannot run (their config lacks an option the workload "
                        "needs; left out by default unless named with --workload): listed as SKIP")


def left_out_line(left: Sequence[LeftOut]) -> str:
    """One line: which cells were left out, which options their workloads need, how to get them."""
    kernels = ", ".join(dict.fromkeys(lo.cell.kernel for lo in left))
    what = "; ".join(f"{w} needs {', '.join(opts)}" for w, opts in needs(left).items())
    return (f"pinharness: left out {len(left)} cells that {kernels} cannot run ({what}): for a kernel that has "
            "them, `python -m harness build --tree ~/linux --config base,pins`, then --kernel tree:<its build dir>; "
            "--all lists them as SKIP")


def select_cells(args: argparse.Namespace, matrix: list[Cell], kernels: dict, progress: Progress) -> list[Cell]:
    """The cells to run: the requested ones without those the kernels cannot run (unless --all,
    or the workload was named), then this runner's shard."""
    if not args.all:
        _, left = split_runnable(matrix, kernels)
        left = [lo for lo in left if lo.cell.workload not in (args.workload or ())]
        if left:
            progress.log(left_out_line(left))
            dropped = {lo.cell for lo in left}
            matrix = [c for c in matrix if c not in dropped]
    return args.shard.select(matrix) if args.shard else matrix


def choose_accel(args: argparse.Namespace, kernel, paths: Paths, out: Path, progress: Progress):
    """The accelerator, said once: the fallback warning when KVM is not used, else which one."""
    said: list[str] = []

    def log(line: str) -> None:
        said.append(line)
        progress.log(line)

    accel = pick_accel(args.accel, kernel, paths, out / "_accel", log)
    if not said:
        progress.log(f"pinharness: accelerator {accel.accel} ({accel.reason})")
    return accel


def confirm_policy(args: argparse.Namespace) -> ConfirmPolicy:
    return ConfirmPolicy(args.confirm, args.confirm if args.confirm_known is None else args.confirm_known)


def resolve_kernels(args: argparse.Namespace, specs: list[str], paths: Paths, progress: Progress) -> dict:
    """Every kernel, downloaded and unpacked when needed, before any cell is chosen or run. A
    download reports through ``progress.download(spec)``: a ``progress(done_bytes, total_bytes)``."""
    return {s: debian_src.resolve_spec(s, paths, modules=args.modules, log=progress.log, refresh=args.refresh,
                                       download_progress=progress.download)
            for s in specs}


def say(message: str) -> None:
    """Harness messages go to stderr; stdout carries the results table (and guest output in `boot`)."""
    print(message, file=sys.stderr, flush=True)


def check_fs_names(fss: list[str]) -> None:
    unknown = [f for f in fss if f not in MKFS]
    if unknown:
        raise HarnessError(f"unknown file system {unknown[0]!r}: use one of {', '.join(MKFS)}")


def kernel_specs(kernels: Sequence[str], arches: Optional[Sequence[str]]) -> list[str]:
    """Every kernel spec on every architecture asked for (the arch as an @ suffix; x86_64 has none)."""
    if not arches:
        return list(kernels)
    return list(dict.fromkeys(with_arch(s, a) for a in arches for s in kernels))


def run(args: argparse.Namespace) -> int:
    paths = Paths.default()
    progress = Progress(jobs=max(1, args.jobs))
    specs = kernel_specs(args.kernel or list(kernel_mod.DEFAULT_KERNELS), args.arch)
    fss = args.fs or ["ext4", "xfs"]
    check_fs_names(fss)  # every name is checked before anything is downloaded, built or booted
    requested = cells(specs, args.workload or list(DEFAULT_WORKLOADS), fss, args.stressor)
    previous = results_mod.load(args.previous) if args.previous else None
    kernels = resolve_kernels(args, specs, paths, progress)  # after the checks of the arguments: downloads take time
    matrix = select_cells(args, requested, kernels, progress)
    progress.total = len(matrix)
    out = args.out or Path("results") / time.strftime("%Y%m%d-%H%M%S")
    with named_enospc(out, "the results directory"):
        out.mkdir(parents=True, exist_ok=True)
    progress.log(f"pinharness: {len(matrix)} cells -> {out}")
    policy = confirm_policy(args)
    done: list = []
    meta: dict = {"cells_planned": len(matrix), "kernels": {s: k.describe() for s, k in kernels.items()},
                  "confirm": {"surprises": policy.surprises, "known": policy.known}}
    t0 = time.monotonic()
    try:
        by_arch = {k.arch: k for k in kernels.values()}  # a guest image and an accelerator per architecture
        images = {a: build_rootfs(paths, log=progress.log, arch=a) for a in by_arch}
        accels = {a: choose_accel(args, k, paths, out, progress) for a, k in by_arch.items()}
        first = accels[kernels[specs[0]].arch]
        meta.update({"accel": first.accel, "accel_reason": first.reason,
                     "accels": {a: c.accel for a, c in accels.items()}})

        stopping = threading.Event()  # the run is over: a cell still running in another worker stays quiet

        def log(line: str) -> None:
            if not stopping.is_set():
                progress.log(line)

        def one(i: int, cell: Cell) -> CellResult:
            tag = f"[{i}/{len(matrix)}]"
            log(f"{tag} {cell.id} ...")
            started = time.monotonic()

            def attempt(n: int) -> CellResult:  # run n > 1 of a cell: a fresh guest, artifacts in attempt-n/
                if stopping.is_set():
                    raise HarnessError("the run was stopped")
                kern = kernels[cell.kernel]
                return run_cell(cell, kern, images[kern.arch], paths, out if n == 1 else out / f"attempt-{n}",
                                accels[kern.arch], VMOptions(memory_mb=args.memory, accel=args.accel, snapshot=not args.no_snapshot),
                                pages=args.pages,
                                log=log)

            res = confirm(attempt(1), attempt, policy, log=lambda s: log(f"{tag} {s}"))
            seconds = sum(a.seconds for a in res.attempts) or res.seconds
            progress.cell_done(time.monotonic() - started, ran=res.status != "SKIP")  # wall time: what the ETA needs
            log(f"{tag} {cell.id}: {results_mod.terminal_outcome(res)} -> {results_mod.verdict_text(res)} "
                f"({seconds:.0f}s){progress.eta_text()}")
            return res

        with named_enospc(out, "the cells' logs and results"):  # cell.json, console logs, scratch disks
            if args.jobs <= 1:
                for i, cell in enumerate(matrix, 1):
                    done.append(one(i, cell))
            else:  # each worker thread boots, uses and reaps its own guest
                pool = ThreadPoolExecutor(max_workers=args.jobs, thread_name_prefix="cell")
                futures: dict = {}
                finished: dict[int, CellResult] = {}
                try:  # submitting too: a signal can come while the first cells already run
                    for i, cell in enumerate(matrix, 1):
                        futures[pool.submit(one, i, cell)] = i
                    for fut in as_completed(futures):
                        finished[futures[fut]] = fut.result()
                except BaseException:  # Ctrl-C or an error: no new cells; the running ones end (their guests
                    stopping.set()     # must be reaped anyway) and keep their results
                    pool.shutdown(wait=False, cancel_futures=True)
                    for fut, i in futures.items():
                        if i not in finished and not fut.cancelled():
                            try:
                                finished[i] = fut.result()
                            except BaseException:
                                pass
                    raise
                finally:
                    pool.shutdown(wait=False, cancel_futures=True)
                    done.extend(finished[i] for i in sorted(finished))  # in matrix order
    except BaseException as exc:
        if "stopping" in locals():
            stopping.set()
        meta["interrupted"] = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
        _remove_scratch_images(out, matrix)
        if done:  # the cells that finished keep their results, whatever stopped the rest
            try:
                _write_results(done, out, meta, t0, args, previous)
                progress.log(f"pinharness: run stopped after {len(done)} of {len(matrix)} cells; their results: "
                             f"{out / 'results.json'}")
            except HarnessError as write_err:
                progress.log(f"pinharness: warning: could not write the partial results: {write_err}")
        raise
    written, extra = _write_results(done, out, meta, t0, args, previous)
    print(results_mod.table(done))
    if previous is not None:
        print(f"\nsince {args.previous}: {compare(previous, written).summary()}")
    for fmt, path in extra.items():
        print(f"{fmt}: {path}")
    print(f"\nresults: {out / 'results.json'}  junit: {out / 'junit.xml'}  logs: {out}/<cell>/")
    return 1 if any(results_mod.fails_run(r) for r in done) else 0


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
        for d in (out / cell.id, *sorted(out.glob(f"attempt-*/{cell.id}"))):
            for img in d.glob("*.img"):
                img.unlink(missing_ok=True)
