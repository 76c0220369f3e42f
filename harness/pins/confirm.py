"""Confirmation: a surprise is run again before anyone is told to believe it.

A cell whose first run the oracle did not expect runs ``ConfirmPolicy.surprises`` more times,
each in a fresh guest (the caller's ``rerun``); a KNOWN-BUG cell runs ``ConfirmPolicy.known``
more times, so that the finding carries its reproduction rate. A re-run *reproduces* the first
run when it has the same verdict status and, for a surprise, the same outcome kind, the same
first report title and the same errno (page counts vary from run to run and are not compared).

The confirmed verdict, with k of n runs reproducing the first one (``RERUN`` says which
statuses are re-run):

* a surprise seen again (k >= 2): its status, ``UNEXPECTED (reproduced 3/3)``; fails the run
* a surprise never seen again (k = 1 < n): ``FLAKY (1/3)``; listed, does not fail the run
* a known bug: ``KNOWN-BUG (reproduced 2/3)``; never fails the run (it is known)

The confirmed CellResult keeps the first run's outcome, with ``runs``, ``reproduced`` and
``attempts`` (every run, the first one first).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

from harness.pins.matrix import CellResult

FLAKY = "FLAKY"

# first run's status -> which ConfirmPolicy count re-runs it (statuses not listed run once:
# EXPECTED, SKIP, and NO-ORACLE, whose fix is a table row, not a retry)
RERUN: dict[str, str] = {
    "UNEXPECTED": "surprises",
    "UNEXPECTED-ALLOW": "surprises",
    "UNEXPECTED-REFUSE": "surprises",
    "CRASH": "surprises",
    "ERROR": "surprises",  # the VM or harness failed: a retry says whether it was the runner
    "KNOWN-BUG": "known",
}


@dataclass(frozen=True)
class ConfirmPolicy:
    surprises: int = 2  # more runs of a cell the oracle did not expect
    known: int = 2  # more runs of a KNOWN-BUG cell (its reproduction rate)

    def reruns(self, first: CellResult) -> int:
        kind = RERUN.get(first.status)
        return max(0, getattr(self, kind)) if kind else 0


def reproduces(first: CellResult, again: CellResult) -> bool:
    """Whether ``again`` showed what ``first`` showed (see the module's rule)."""
    if again.status != first.status:
        return False
    if RERUN.get(first.status) == "known":
        return True  # the oracle already checked the bug's facets
    return (again.kind == first.kind and again.pin_errno == first.pin_errno
            and (not first.titles or first.titles[0] in again.titles))


def confirm(first: CellResult, rerun: Callable[[int], CellResult], policy: ConfirmPolicy,
            log: Callable[[str], None] = lambda s: None) -> CellResult:
    """``first`` confirmed by ``rerun(n)`` (n = 2, 3, ...: the attempt number, a fresh guest each)."""
    more = policy.reruns(first)
    if more == 0:
        return first
    attempts = [first]
    for n in range(2, more + 2):
        log(f"{first.cell.id}: {first.status} on run 1, confirming: run {n} of {more + 1}")
        attempts.append(rerun(n))
    k = sum(1 for a in attempts if reproduces(first, a))
    out = replace(first, runs=len(attempts), reproduced=k, attempts=attempts)
    if RERUN[first.status] == "surprises" and k == 1:
        out.status, out.ok = FLAKY, True
    return out


def rate_text(r: CellResult) -> str:
    """' (reproduced 3/3)', ' (1/3)' for FLAKY, '' for a cell that ran once."""
    if r.runs <= 1:
        return ""
    if r.status == FLAKY:
        return f" ({r.reproduced}/{r.runs})"
    return f" (reproduced {r.reproduced}/{r.runs})"


def verdict_text(status: str, r: CellResult) -> str:
    """The verdict a person reads: ``UNEXPECTED (reproduced 3/3)``, ``FLAKY (1/3)``, ``EXPECTED``."""
    return status + rate_text(r)


def partial(r: CellResult) -> bool:
    """A confirmed cell whose first outcome did not show on every run (flaky, or a known bug below n/n)."""
    return r.runs > 1 and r.reproduced < r.runs
