"""harness.kbuild.bisect_runner: a run's result reduced to a bisect Signature; --workload specs."""
from __future__ import annotations

import json

import pytest

from harness.kbuild.bisect import INFRA, Signature
from harness.kbuild.bisect_runner import WorkloadSpec, signature_of_cell, signature_of_pytest
from harness.errors import HarnessError
from harness.pins.matrix import Cell, CellResult


def cell(**kw) -> CellResult:
    return CellResult(Cell("tree:/o", "vfio", "ext4", ("bh-fill", "reclaim")), **kw)


def test_cell_results_become_signatures():
    warn = cell(status="KNOWN-BUG", kind="WARNING", titles=["WARNING in ext4_dirty_folio"], lost_pages=16)
    assert signature_of_cell(warn) == Signature("WARNING", ("WARNING in ext4_dirty_folio",), 0, "")
    assert signature_of_cell(cell(status="EXPECTED", kind="PROTECTED", pin_errno=14)).errno == 14
    assert signature_of_cell(cell(status="SKIP", detail="lacks CONFIG_VFIO_PCI")) == Signature(
        INFRA, (), 0, "lacks CONFIG_VFIO_PCI")
    assert signature_of_cell(cell(status="ERROR", kind="ERROR", detail="BootTimeout: x")).kind == INFRA
    crash = cell(status="CRASH", kind="CRASH", titles=["BUG: unable to handle page fault for address"])
    assert signature_of_cell(crash).kind == "CRASH"


def write_junit(path, cases):
    body = "".join(f'<testcase classname="t" name="{n}">{inner}</testcase>' for n, inner in cases)
    path.write_text(f'<?xml version="1.0"?><testsuites><testsuite name="pytest">{body}</testsuite></testsuites>')


def test_pytest_runs_become_signatures(tmp_path):
    junit = tmp_path / "junit.xml"
    write_junit(junit, [("a", "")])
    assert signature_of_pytest(0, tmp_path, junit) == Signature("PASSED")
    write_junit(junit, [("a", '<failure message="assert 1 == 0">x</failure>')])
    assert signature_of_pytest(1, tmp_path, junit) == Signature("FAILED", detail="assert 1 == 0")
    (tmp_path / "t_a").mkdir()
    (tmp_path / "t_a" / "outcome.json").write_text(json.dumps({"kernel_reports": ["WARNING in ext4_dirty_folio"]}))
    got = signature_of_pytest(1, tmp_path, junit)
    assert (got.kind, got.titles) == ("REPORTED", ("WARNING in ext4_dirty_folio",))
    write_junit(junit, [("a", '<skipped message="lacks CONFIG_VFIO_PCI"/>')])
    (tmp_path / "t_a" / "outcome.json").unlink()
    assert signature_of_pytest(0, tmp_path, junit).kind == INFRA
    write_junit(junit, [("a", '<error message="boot of tree-6.1 failed">x</error>')])
    assert signature_of_pytest(1, tmp_path, junit) == Signature(INFRA, detail="boot of tree-6.1 failed")
    assert signature_of_pytest(5, tmp_path, junit).detail == "pytest: no tests collected (exit 5)"
    assert signature_of_pytest(1, tmp_path, tmp_path / "missing.xml").kind == INFRA


def test_workload_spec():
    assert WorkloadSpec.parse("vfio:xfs:bh-fill+reclaim") == WorkloadSpec("vfio", "xfs", ("bh-fill", "reclaim"))
    spec = WorkloadSpec.parse("odirect")
    assert spec.fs == "ext4" and spec.stressors == ("reclaim",)
    for bad, msg in (("nope", "unknown workload"), ("vfio:btrfs", "not ext4 or xfs"), ("vfio:ext4:x", "stressor"),
                     ("a:b:c:d", "WORKLOAD")):
        with pytest.raises(HarnessError, match=msg):
            WorkloadSpec.parse(bad)


def test_kernel_steps_turn_a_failed_build_into_a_skip_and_a_good_one_into_a_digest(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from harness.kbuild import build as build_mod
    from harness.kbuild.bisect_runner import KernelSteps
    from harness.vm.host import Paths

    calls = []

    def failing(req, paths, log):
        calls.append(req)
        raise build_mod.BuildError("kernel build failed: mm/gup.c:1: error: x")

    monkeypatch.setattr(build_mod, "build_kernel", failing)
    steps = KernelSteps(tmp_path / "o", Paths(tmp_path), ("base", "pins"), 2, log=lambda s: None)
    b = steps.build(tmp_path / "src", "c0ffee")
    assert not b.ok and b.detail == "kernel build failed: mm/gup.c:1: error: x"
    assert calls[0].tree == tmp_path / "src" and calls[0].out == tmp_path / "o" and calls[0].jobs == 2
    monkeypatch.setattr(build_mod, "build_kernel", lambda req, paths, log: ("KERNEL", SimpleNamespace(seconds=7.0)))
    monkeypatch.setattr(build_mod, "image_digest", lambda out: "d1")
    b = steps.build(tmp_path / "src", "c0ffee")
    assert (b.ok, b.digest, b.seconds, b.handle) == (True, "d1", 7.0, ("c0ffee", "KERNEL"))
