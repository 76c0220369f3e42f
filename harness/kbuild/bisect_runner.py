"""The real step runners of a bisect: build the commit (harness.kbuild.build), boot it and run
either a pin workload (harness.pins.matrix.run_cell: one fresh guest per run) or a pytest
node id (with ``--kernel-tree <O= dir>``), and reduce each run to a Signature.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from harness.kbuild import build as build_mod
from harness.kbuild.bisect import INFRA, Build, Signature
from harness.errors import HarnessError
from harness.vm.host import Paths
from harness.pins.stressors import parse as parse_stressors

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class WorkloadSpec:
    """"workload[:fs[:stressors]]", e.g. "vfio:ext4:bh-fill+reclaim"."""

    workload: str
    fs: str
    stressors: tuple[str, ...]

    @classmethod
    def parse(cls, spec: str) -> "WorkloadSpec":
        from harness.pins.workloads import WORKLOADS

        parts = spec.split(":")
        if not parts[0] or len(parts) > 3:
            raise HarnessError(f"--workload {spec!r}: use WORKLOAD[:FS[:STRESSORS]], e.g. vfio:ext4:bh-fill+reclaim")
        name = parts[0]
        if name not in WORKLOADS:
            raise HarnessError(f"unknown workload {name!r}: use one of {', '.join(WORKLOADS)}")
        fs = parts[1] if len(parts) > 1 and parts[1] else "ext4"
        if fs not in ("ext4", "xfs"):
            raise HarnessError(f"--workload {spec!r}: file system {fs!r} is not ext4 or xfs")
        st = parts[2] if len(parts) > 2 and parts[2] else "+".join(WORKLOADS[name].default_stressors)
        return cls(name, fs, parse_stressors(st))


@dataclass
class KernelSteps:
    """Builds a commit's kernel into one stable O= directory (incremental across steps)."""

    out: Path
    paths: Paths
    configs: tuple[str, ...] = build_mod.DEFAULT_CONFIGS
    jobs: int = 0
    log: Callable[[str], None] = print

    def build(self, src: Path, commit: str) -> Build:
        t0 = time.monotonic()
        try:
            kernel, res = build_mod.build_kernel(build_mod.BuildRequest(src, self.out, self.configs, self.jobs),
                                                 self.paths, self.log)
        except HarnessError as exc:
            return Build(False, seconds=time.monotonic() - t0, detail=str(exc))
        return Build(True, build_mod.image_digest(self.out), res.seconds, handle=(commit, kernel))


# --------------------------------------------------------------------------- workload runs

def signature_of_cell(res) -> Signature:
    """A matrix CellResult as a bisect Signature (skips and harness errors: INFRA)."""
    if res.status == "SKIP" or res.kind in ("", "ERROR"):
        return Signature(INFRA, tuple(res.titles), detail=res.detail[:300])
    return Signature(res.kind, tuple(res.titles), res.pin_errno, res.detail[:300])


@dataclass
class WorkloadSteps(KernelSteps):
    spec: Optional[WorkloadSpec] = None
    artifacts: Path = Path("artifacts") / "bisect"
    accel: str = "auto"
    memory_mb: int = 1024
    snapshot: bool = True  # restore guests from a snapshot per kernel (a re-run of a step restores it)
    _accel_choice: object = field(default=None, init=False, repr=False)  # decided at the first run
    _image: object = field(default=None, init=False, repr=False)

    def run(self, build: Build, attempt: int) -> Signature:
        from harness.vm.image import build_rootfs
        from harness.pins.matrix import Cell, run_cell
        from harness.vm.vm import VMOptions, pick_accel

        commit, kernel = build.handle
        if self._image is None:
            self._image = build_rootfs(self.paths, log=self.log)
        if self._accel_choice is None:
            self._accel_choice = pick_accel(self.accel, kernel, self.paths, self.artifacts / "_accel", log=self.log)
        cell = Cell(f"tree:{self.out}", self.spec.workload, self.spec.fs, self.spec.stressors)
        res = run_cell(cell, kernel, self._image, self.paths, self.artifacts / f"{commit[:12]}-{attempt}",
                       self._accel_choice, VMOptions(memory_mb=self.memory_mb, accel=self.accel, snapshot=self.snapshot), log=self.log)
        return signature_of_cell(res)


# --------------------------------------------------------------------------- pytest runs

# junit element of the test case -> what the run counts as
JUNIT_KIND = {"failure": "FAILED", "error": INFRA, "skipped": INFRA}
# pytest exit codes that mean "could not test": interrupted, internal error, usage error, no tests
PYTEST_INFRA_EXIT = {2: "interrupted", 3: "internal error", 4: "usage error", 5: "no tests collected"}


def signature_of_pytest(returncode: int, artifacts: Path, junit: Path) -> Signature:
    """The outcome of one pytest run of a node id from its junit XML and outcome.json files."""
    if returncode in PYTEST_INFRA_EXIT:
        return Signature(INFRA, detail=f"pytest: {PYTEST_INFRA_EXIT[returncode]} (exit {returncode})")
    kinds = []
    detail = ""
    if junit.exists():
        for case in ET.parse(junit).iter("testcase"):
            child = next((c for c in case if c.tag in JUNIT_KIND), None)
            kinds.append(JUNIT_KIND[child.tag] if child is not None else "PASSED")
            if child is not None and not detail:
                detail = (child.get("message") or "")[:300]
    if not kinds:
        return Signature(INFRA, detail=f"pytest exit {returncode} without test results")
    titles: list[str] = []
    for f in sorted(Path(artifacts).glob("*/outcome.json")):
        titles += json.loads(f.read_text()).get("kernel_reports", [])
    if INFRA in kinds and "FAILED" not in kinds and not titles:
        return Signature(INFRA, detail=detail or "setup error or skip")
    if titles:
        return Signature("REPORTED", tuple(dict.fromkeys(titles)), detail=detail)
    return Signature("FAILED" if "FAILED" in kinds else "PASSED", detail=detail)


@dataclass
class PytestSteps(KernelSteps):
    nodeid: str = ""
    artifacts: Path = Path("artifacts") / "bisect"
    accel: str = "auto"
    timeout: float = 3600.0

    def run(self, build: Build, attempt: int) -> Signature:
        commit, _kernel = build.handle
        art = (self.artifacts / f"{commit[:12]}-{attempt}").resolve()
        art.mkdir(parents=True, exist_ok=True)
        junit = art / "junit.xml"
        argv = [sys.executable, "-m", "pytest", self.nodeid, "--kernel-tree", str(self.out), "--artifacts", str(art),
                "--accel", self.accel, "-p", "no:cacheprovider", "-q", f"--junitxml={junit}"]
        try:
            proc = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            return Signature(INFRA, detail=f"pytest timed out after {self.timeout:.0f}s")
        (art / "pytest.log").write_text(proc.stdout + proc.stderr)
        return signature_of_pytest(proc.returncode, art, junit)
