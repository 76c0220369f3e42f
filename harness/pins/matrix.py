"""The main job: kernels × workloads × file systems × stressors → outcomes.

Each cell boots its own guest with a fresh scratch disk, runs one workload,
verifies the data, checks the file system on the host and classifies the
result against the oracle. Artifacts of every cell (console log, argv, cell.json)
are kept, failed ones included.
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

from harness.crash import console
from harness.pins import oracle
from harness.pins import stressors as stressors_mod
from harness.pins.repro.finding import KERNEL_FILE, config_options
from harness.errors import HarnessError, VMError
from harness.vm.host import Paths
from harness.vm.image import GuestImage, fsck, make_scratch_disk
from harness.vm.kernel import Kernel
from harness.vm.qemu import AccelChoice
from harness.crash.report import write_reports
from harness.vm.vm import VM, VMOptions
from harness.pins.workloads import WORKLOADS, needed_config, run_workload, workload_disks, workload_vm_options

SCRATCH_SERIAL = "scratch0"


@dataclass(frozen=True)
class Cell:
    kernel: str  # kernel spec
    workload: str
    fs: str
    stressors: tuple[str, ...]

    @property
    def id(self) -> str:
        k = re.sub(r"[^A-Za-z0-9._-]+", "_", self.kernel.replace("debian:", "debian-"))
        return f"{k}-{self.workload}-{self.fs}-{'+'.join(self.stressors)}"


@dataclass
class CellResult:
    cell: Cell
    release: str = ""
    status: str = "NOT-RUN"  # verdict status, SKIP, ERROR, or FLAKY (confirm.py)
    ok: bool = False  # the verdict does not fail the run (EXPECTED, KNOWN-BUG, FLAKY)
    outcome: str = ""
    kind: str = ""
    titles: list = field(default_factory=list)
    lost_pages: int = 0
    device_pages: int = 0
    pin_errno: int = 0
    expect: str = ""
    bug: bool = False
    detail: str = ""
    fsck_clean: Optional[bool] = None
    seconds: float = 0.0
    boot_seconds: float = 0.0
    accel: str = ""
    artifacts: str = ""
    run: dict = field(default_factory=dict)
    # confirmation (confirm.py): how often the cell ran, how many runs showed the first run's verdict,
    # and every run (first first) when it ran more than once; the fields above are the first run's
    runs: int = 1
    reproduced: int = 1
    attempts: list["CellResult"] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["cell"] = {**asdict(self.cell), "id": self.cell.id, "stressors": list(self.cell.stressors)}
        d["attempts"] = [a.attempt_dict() for a in self.attempts]
        return d

    def attempt_dict(self) -> dict:
        """One run of a confirmed cell, as kept in its ``attempts`` (the cell is the parent's)."""
        return {k: v for k, v in self.to_dict().items() if k not in ("cell", "attempts", "runs", "reproduced")}


def cells(kernels: Sequence[str], workloads: Sequence[str], fss: Sequence[str],
          stressors: Optional[Sequence[str]] = None) -> list[Cell]:
    """The cross product; stressors None = each workload's default set."""
    out = []
    for k in kernels:
        for w in workloads:
            if w not in WORKLOADS:
                raise HarnessError(f"unknown workload {w!r}: use one of {', '.join(WORKLOADS)}")
            for fs in fss:
                for st in (stressors or ["+".join(WORKLOADS[w].default_stressors)]):
                    out.append(Cell(k, w, fs, stressors_mod.parse(st)))
    return out


@dataclass(frozen=True)
class LeftOut:
    """A cell its kernel cannot run: the workload needs options the kernel's config lacks."""

    cell: Cell
    missing: tuple[str, ...]  # CONFIG_ names


def unrunnable(spec, kernel: Kernel) -> tuple[str, ...]:
    """What ``kernel`` lacks to run workload ``spec``: CONFIG_ options its config lacks, or the
    workload's port to the kernel's architecture; () when it can (or its config is unknown)."""
    if kernel.arch not in spec.arches:
        return (f"a {kernel.arch} port of {spec.name}",)
    return tuple(kernel.missing_config(*needed_config(spec, kernel.arch))) if kernel.config else ()


def split_runnable(matrix: Sequence[Cell], kernels: Mapping[str, Kernel]) -> tuple[list[Cell], list[LeftOut]]:
    """The cells whose kernel can run them, and the others, decided before any boot from the
    kernel's config; a kernel whose config is unknown keeps all its cells (run_cell decides)."""
    keep: list[Cell] = []
    left: list[LeftOut] = []
    for c in matrix:
        kernel = kernels[c.kernel]
        missing = unrunnable(WORKLOADS[c.workload], kernel)
        if missing:
            left.append(LeftOut(c, missing))
        else:
            keep.append(c)
    return keep, left


def needs(left: Sequence[LeftOut]) -> dict[str, list[str]]:
    """Workload -> the options it needs that some kernel lacked (in first-seen order)."""
    out: dict[str, dict[str, None]] = {}
    for lo in left:
        out.setdefault(lo.cell.workload, {}).update(dict.fromkeys(lo.missing))
    return {w: list(opts) for w, opts in out.items()}


def run_cell(cell: Cell, kernel: Kernel, image: GuestImage, paths: Paths, artifacts: Path,
             accel: AccelChoice, options: Optional[VMOptions] = None, pages: int = 16,
             log: Callable[[str], None] = print) -> CellResult:
    spec = WORKLOADS[cell.workload]
    workdir = artifacts / cell.id
    workdir.mkdir(parents=True, exist_ok=True)
    res = CellResult(cell, release=kernel.release, accel=accel.accel, artifacts=str(workdir))
    (workdir / KERNEL_FILE).write_text(json.dumps(kernel.record(config_options(cell.workload)), indent=1, default=str))
    exp = oracle.expectation(kernel.version_tuple, cell.workload, cell.fs, cell.stressors, config=kernel.config,
                              arch=kernel.arch)
    if exp is not None:
        res.expect, res.bug = exp.expect, exp.bug
    missing = unrunnable(spec, kernel)
    if missing:
        res.status, res.detail = "SKIP", f"{kernel.name} lacks {', '.join(missing)}"
        _save(res, workdir)
        return res
    t0 = time.monotonic()
    scratch = make_scratch_disk(workdir, cell.fs, serial=SCRATCH_SERIAL)
    disks = [scratch] + workload_disks(spec, workdir, pages, cell.stressors)
    opts = options or VMOptions()
    for k, v in workload_vm_options(spec, cell.stressors).items():
        setattr(opts, k, v)
    vm = VM(kernel, image, paths, workdir / "vm", opts, disks=disks, accel=accel, log=log)
    run = None
    try:
        with vm:
            res.boot_seconds = round(vm.boot_seconds, 2)
            dev = vm.disk(SCRATCH_SERIAL)
            vm.run(f"modprobe {cell.fs} 2>/dev/null; mkdir -p /mnt/scratch && mount -t {cell.fs} {dev} /mnt/scratch",
                   timeout=60, check=True)
            run = run_workload(vm, cell.workload, cell.fs, dev, "/mnt/scratch", cell.stressors, paths, pages=pages)
            vm.run("umount /mnt/scratch", timeout=60)
    except (VMError, HarnessError) as exc:
        text = vm.console_text()
        reports = console.parse(text)
        res.titles = [r.title for r in reports if not oracle.is_event(r)]
        crashes = [r.title for r in reports if r.type in oracle.CRASH_TYPES]
        if crashes:
            res.kind, res.outcome = "CRASH", "+".join(f"CRASH({t})" for t in crashes)
            res.status = "CRASH"
        else:
            res.status, res.kind = "ERROR", "ERROR"
        res.detail = f"{type(exc).__name__}: {exc}"
    res.seconds = round(time.monotonic() - t0, 2)
    if run is not None:
        reports = console.parse(run.console)
        outcome = oracle.classify(run, reports)
        v = oracle.verdict(outcome, exp)
        res.fsck_clean, fsck_out = fsck(scratch)
        (workdir / "fsck.txt").write_text(fsck_out)
        res.status, res.ok, res.detail = v.status, v.ok, v.detail
        if not res.fsck_clean:
            res.ok, res.status = False, "UNEXPECTED"
            res.detail += f"; {cell.fs} check of the scratch disk found problems (fsck.txt)"
        res.outcome, res.kind, res.titles = str(outcome), outcome.kind, list(outcome.titles)
        res.lost_pages, res.device_pages, res.pin_errno = outcome.lost_pages, outcome.device_pages, outcome.pin_errno
        res.run = run.to_dict()
        (workdir / "workload-console.log").write_text(run.console)
        if reports:
            write_reports(workdir / "reports.txt", reports, kernel)
    _save(res, workdir)
    # scratch images are big and sparse; the source image is regenerated: keep only the logs
    for img in workdir.glob("*.img"):
        img.unlink()
    return res


def _save(res: CellResult, workdir: Path) -> None:
    (workdir / "cell.json").write_text(json.dumps(res.to_dict(), indent=1))
