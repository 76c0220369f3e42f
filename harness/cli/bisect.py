"""`python -m harness bisect`: find the commit that caused (or, with --fix, fixed) an outcome."""
from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

from harness.kbuild import build as build_mod
from harness.kbuild.bisect import BisectOptions, Bisector, default_workdir
from harness.kbuild.bisect_runner import PytestSteps, WorkloadSpec, WorkloadSteps
from harness.errors import HarnessError
from harness.vm.host import Paths
from harness.kbuild.worktree import toplevel


def _csv(value: str) -> list[str]:
    return [v for v in value.split(",") if v]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tree", type=Path, required=True, help="the kernel git tree (its checkout is never touched)")
    p.add_argument("--good", required=True, metavar="REV", help="a revision without the outcome")
    p.add_argument("--bad", required=True, metavar="REV", help="a revision with the outcome")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--test", metavar="NODEID", help="a pytest node id, run with --kernel-tree <the build>")
    what.add_argument("--workload", metavar="SPEC",
                      help="WORKLOAD[:FS[:STRESSORS]] run in a fresh guest, e.g. vfio:ext4:bh-fill+reclaim")
    p.add_argument("--fix", action="store_true",
                   help="find the commit that fixed it: --bad is the older broken revision, --good the newer fixed one")
    p.add_argument("--runs", type=int, default=3, metavar="N",
                   help="runs at each end; the reproduction rate they show sets the runs per commit (default 3)")
    p.add_argument("--max-runs", type=int, default=8, help="at most this many runs per commit (default 8)")
    p.add_argument("--confidence", type=float, default=0.95,
                   help="per commit: chance that a commit with the outcome shows it (default 0.95)")
    p.add_argument("--config", type=_csv, default=list(build_mod.DEFAULT_CONFIGS), metavar="A,B",
                   help="kernel-configs fragments for every build (default: %(default)s)")
    p.add_argument("--jobs", "-j", type=int, default=0, help="make -j (default: number of CPUs)")
    p.add_argument("--accel", default="auto", choices=("auto", "kvm", "tcg"))
    p.add_argument("--memory", type=int, default=1024, metavar="MB", help="guest memory for --workload")
    p.add_argument("--no-snapshot", action="store_true", help="boot every guest afresh (default: restore a snapshot of a booted guest, saved on first use)")
    p.add_argument("--run-timeout", type=float, default=3600, help="seconds for one pytest run (default 3600)")
    p.add_argument("--out", type=Path, default=None,
                   help="directory for the step log (bisect.json) and per-run artifacts "
                        "(default: artifacts/bisect-<time>)")


def run(args: argparse.Namespace) -> int:
    if args.runs < 1 or args.max_runs < 1 or not 0 < args.confidence < 1:
        raise HarnessError("--runs and --max-runs must be >= 1 and --confidence between 0 and 1")
    paths = Paths.default()
    top = toplevel(args.tree)
    work = default_workdir(top)
    out = args.out or Path("artifacts") / f"bisect-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    build_dir = work / ("build-" + "+".join(Path(c).stem for c in args.config))
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    build_mod.fragment_paths(args.config)  # a bad --config is an error before any checkout
    common = dict(out=build_dir, paths=paths, configs=tuple(args.config), jobs=args.jobs, log=log,
                  artifacts=out.resolve(), accel=args.accel)
    if args.workload:
        runner = WorkloadSteps(**common, spec=WorkloadSpec.parse(args.workload), memory_mb=args.memory,
                               snapshot=not args.no_snapshot)
    else:
        runner = PytestSteps(**common, nodeid=args.test, timeout=args.run_timeout)
    opts = BisectOptions(args.tree, args.good, args.bad, "fix" if args.fix else "cause", args.runs,
                         args.confidence, args.max_runs, work, out / "bisect.json")
    # SIGTERM (CI cancelling, `kill`) unwinds like Ctrl-C, so the worktree and bisect state go too.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        result = Bisector(opts, runner, log).run()
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(result.summary())
    print(f"step log: {opts.log}")
    return 0 if result.commit else 1


def _interrupt(signum, frame):
    raise KeyboardInterrupt
