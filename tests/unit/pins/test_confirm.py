"""Confirmation of surprises (pure logic): a fake run_cell stands in for the guests."""
import pytest

from harness.pins.confirm import RERUN, ConfirmPolicy, confirm, partial, rate_text, reproduces, verdict_text
from harness.pins.matrix import Cell, CellResult

CELL = Cell("debian:6.12", "kvm", "xfs", ("bh-fill", "reclaim"))
LEAK = dict(status="UNEXPECTED", ok=False, kind="PIN-LEAK", outcome="PIN-LEAK(1)")
CLEAN = dict(status="EXPECTED", ok=True, kind="CLEAN", outcome="CLEAN")
BUG = dict(status="KNOWN-BUG", ok=True, kind="DATA-LOSS", outcome="WARNING(WARNING in ext4_dirty_folio)+DATA-LOSS(16)",
           titles=["WARNING in ext4_dirty_folio"], bug=True)
ERROR = dict(status="ERROR", ok=False, kind="ERROR", detail="BootTimeout: no login prompt in 300 s")


def res(**kw) -> CellResult:
    return CellResult(CELL, **kw)


class FakeRuns:
    """run_cell's stand-in: attempt n returns the n-th scripted result and records the call."""

    def __init__(self, *script):
        self.script, self.calls = script, []

    def __call__(self, n: int) -> CellResult:
        self.calls.append(n)
        return res(**self.script[n - 2], artifacts=f"/out/attempt-{n}/{CELL.id}")


@pytest.mark.parametrize("script, status, ok, k, text", [
    ((LEAK, LEAK), "UNEXPECTED", False, 3, "UNEXPECTED (reproduced 3/3)"),
    ((CLEAN, LEAK), "UNEXPECTED", False, 2, "UNEXPECTED (reproduced 2/3)"),
    ((CLEAN, CLEAN), "FLAKY", True, 1, "FLAKY (1/3)"),
    ((ERROR, CLEAN), "FLAKY", True, 1, "FLAKY (1/3)"),  # another surprise is not this one
])
def test_a_surprise_is_rerun_and_carries_its_rate(script, status, ok, k, text):
    runs = FakeRuns(*script)
    first = res(**LEAK, artifacts=f"/out/{CELL.id}")
    got = confirm(first, runs, ConfirmPolicy(surprises=2))
    assert runs.calls == [2, 3]  # attempt numbers: each a fresh run_cell call
    assert (got.status, got.ok, got.runs, got.reproduced) == (status, ok, 3, k)
    assert verdict_text(got.status, got) == text
    assert got.attempts[0] is first and [a.artifacts for a in got.attempts[1:]] == [
        f"/out/attempt-2/{CELL.id}", f"/out/attempt-3/{CELL.id}"]
    assert got.outcome == "PIN-LEAK(1)"  # the cell shows the first run's outcome
    assert partial(got) == (k < 3)


def test_what_runs_again():
    policy = ConfirmPolicy(surprises=2, known=1)
    assert [policy.reruns(res(status=s)) for s in ("EXPECTED", "SKIP", "NO-ORACLE", "KNOWN-BUG", "CRASH")] == [0, 0, 0, 1, 2]
    assert set(RERUN) >= {"UNEXPECTED", "UNEXPECTED-ALLOW", "UNEXPECTED-REFUSE", "CRASH", "ERROR", "KNOWN-BUG"}
    runs = FakeRuns()
    first = res(**CLEAN)
    assert confirm(first, runs, policy) is first and runs.calls == []
    assert rate_text(first) == "" and verdict_text("EXPECTED", first) == "EXPECTED"


def test_confirm_zero_believes_the_first_run():
    runs = FakeRuns()
    first = res(**LEAK)
    got = confirm(first, runs, ConfirmPolicy(surprises=0, known=0))
    assert got is first and got.status == "UNEXPECTED" and not got.ok and runs.calls == []
    assert verdict_text(got.status, got) == "UNEXPECTED"


def test_a_known_bug_reports_its_rate_and_never_fails():
    runs = FakeRuns(BUG, CLEAN | {"status": "UNEXPECTED", "ok": False, "outcome": "CLEAN"})
    got = confirm(res(**BUG), runs, ConfirmPolicy(surprises=2, known=2))
    assert (got.status, got.ok, got.reproduced, got.runs) == ("KNOWN-BUG", True, 2, 3)
    assert verdict_text(got.status, got) == "KNOWN-BUG (reproduced 2/3)" and partial(got)
    all3 = confirm(res(**BUG), FakeRuns(BUG, BUG), ConfirmPolicy(known=2))
    assert verdict_text(all3.status, all3) == "KNOWN-BUG (reproduced 3/3)" and not partial(all3)


def test_the_same_surprise_means_same_status_kind_first_title_and_errno():
    crash = res(status="CRASH", kind="CRASH", titles=["BUG: unable to handle page fault in xfs_foo", "WARNING in bar"])
    assert reproduces(crash, res(status="CRASH", kind="CRASH", titles=["WARNING in x",
                                                                       "BUG: unable to handle page fault in xfs_foo"]))
    assert not reproduces(crash, res(status="CRASH", kind="CRASH", titles=["kernel BUG in other"]))
    leak = res(**LEAK)
    assert reproduces(leak, res(**LEAK | {"outcome": "PIN-LEAK(3)"}))  # counts vary by run
    assert not reproduces(leak, res(**LEAK | {"kind": "DATA-LOSS"}))
    refused = res(status="UNEXPECTED-REFUSE", kind="PROTECTED", pin_errno=14)
    assert not reproduces(refused, res(status="UNEXPECTED-REFUSE", kind="PROTECTED", pin_errno=95))
    log = []
    confirm(leak, FakeRuns(LEAK, LEAK), ConfirmPolicy(), log=log.append)
    assert log == [f"{CELL.id}: UNEXPECTED on run 1, confirming: run 2 of 3",
                   f"{CELL.id}: UNEXPECTED on run 1, confirming: run 3 of 3"]
