"""What changed between two runs of the matrix (last night's results.json and tonight's).

Cells are matched by id (kernel spec × workload × fs × stressors). Each cell's outcome is
reduced to its *facets*: ``CRASH: <title>``, ``WARNING: <title>``, ``DATA-LOSS``,
``PIN-LEAK``, ``ERROR`` (the VM or harness failed), ``PROTECTED(<errno>)``, ``SKIP``. Lost-page
counts are left out on purpose: how many pages a racy run loses varies from run to run.

The rule, first match wins (``RULES`` below says the same in one line each):

1. only in the new run -> ADDED; only in the old run -> REMOVED
2. same facets and same verdict -> UNCHANGED
3. same facets, other verdict -> CHANGED (the oracle changed, not the kernel)
4. other facets, and the new run's verdict is FLAKY (its surprise did not reproduce on the
   re-runs, pins/confirm.py) -> FLAKY, never NEW
5. other facets, *same kernel release* -> FLAKY: the outcome changed while the kernel
   did not, so it is the race (or the runner), not a regression; never counted as NEW
6. other facets, other release: a problem facet (crash, warning, data loss, pin leak,
   error) appeared -> NEW; else one went away -> FIXED; else -> CHANGED

A FLAKY cell's facets are its first run's, each marked ``FLAKY ...``: they compare, but they
are not problems, so a surprise that did not reproduce is never NEW nor, when it goes, FIXED.
"""
from __future__ import annotations

import errno as errno_mod
from dataclasses import dataclass
from typing import Optional

from harness.pins.confirm import FLAKY
from harness.pins.matrix import CellResult
from harness.results.model import RunResults, verdict_text

CHANGE_KINDS = ("NEW", "FIXED", "CHANGED", "FLAKY", "ADDED", "REMOVED", "UNCHANGED")
PROBLEM_FACETS = ("CRASH", "WARNING", "DATA-LOSS", "PIN-LEAK", "ERROR")
FAILED_RUN_STATUSES = {"ERROR", "NOT-RUN"}

# change kind -> one-line statement of the rule that yields it (printed by `compare --rules`)
RULES: dict[str, str] = {
    "ADDED": "the cell is only in the new run",
    "REMOVED": "the cell is only in the old run",
    "UNCHANGED": "same facets (crash/warning titles, data loss, pin leak, errno, error, skip) and same verdict",
    "CHANGED": "same facets but another verdict (the oracle changed), or other facets with no problem "
               "appearing or going away (e.g. another errno)",
    "FLAKY": "other facets while the kernel release stayed the same (the race or the runner, not the kernel), "
             "or other facets where the new run's surprise did not reproduce on its re-runs (verdict FLAKY)",
    "NEW": "the kernel release changed and a problem facet (crash, warning, data loss, pin leak, error) appeared",
    "FIXED": "the kernel release changed and problem facets went away without new ones appearing",
}


def facets(r: CellResult) -> frozenset[str]:
    """The cell's outcome as a set of comparable facts (no page counts: those vary by run)."""
    out = set()
    for t in r.titles:
        out.add(f"CRASH: {t}" if f"CRASH({t})" in r.outcome else f"WARNING: {t}")
    if r.lost_pages or "DATA-LOSS" in r.outcome:
        out.add("DATA-LOSS")
    if "PIN-LEAK" in r.outcome:
        out.add("PIN-LEAK")
    if r.status in FAILED_RUN_STATUSES:
        out.add("ERROR")
    if r.status == "SKIP":
        out.add("SKIP")
    if r.pin_errno:
        out.add(f"PROTECTED({errno_mod.errorcode.get(r.pin_errno, r.pin_errno)})")
    if r.status == FLAKY:
        return frozenset(f"{FLAKY} {f}" for f in out) | {FLAKY}
    return frozenset(out)


def problems(fs: frozenset[str]) -> frozenset[str]:
    return frozenset(f for f in fs if f.split(":")[0] in PROBLEM_FACETS)


@dataclass(frozen=True)
class CellChange:
    cell_id: str
    kind: str  # one of CHANGE_KINDS
    old: Optional[CellResult]
    new: Optional[CellResult]
    old_release: str = ""
    new_release: str = ""
    appeared: tuple[str, ...] = ()  # problem facets only in the new run
    gone: tuple[str, ...] = ()  # problem facets only in the old run

    @property
    def old_outcome(self) -> str:
        return _outcome(self.old)

    @property
    def new_outcome(self) -> str:
        return _outcome(self.new)

    @property
    def releases(self) -> str:
        """'old -> new' when the kernel release changed, else the one release."""
        if self.old_release and self.new_release and self.old_release != self.new_release:
            return f"{self.old_release} -> {self.new_release}"
        return self.new_release or self.old_release

    def line(self) -> str:
        """One line for a terminal or a log."""
        text = f"{self.kind:<9} {self.cell_id}  [{self.releases}]  {self.old_outcome or '-'} -> {self.new_outcome or '-'}"
        extra = [f"+ {p}" for p in self.appeared] + [f"- {p}" for p in self.gone]
        return text + ("  (" + "; ".join(extra) + ")" if extra else "")


def _outcome(r: Optional[CellResult]) -> str:
    if r is None:
        return ""
    return f"{r.outcome or r.status} [{verdict_text(r)}]"


@dataclass(frozen=True)
class Comparison:
    changes: tuple[CellChange, ...]

    def of(self, kind: str) -> list[CellChange]:
        return [c for c in self.changes if c.kind == kind]

    @property
    def counts(self) -> dict[str, int]:
        return {k: len(self.of(k)) for k in CHANGE_KINDS}

    def summary(self) -> str:
        return ", ".join(f"{n} {k.lower()}" for k, n in self.counts.items())


def classify(old: Optional[CellResult], new: Optional[CellResult], old_release: str = "",
             new_release: str = "") -> CellChange:
    """Apply the module's rule to one cell (either side may be missing)."""
    ref = new or old
    assert ref is not None, "classify needs at least one side"
    base = dict(cell_id=ref.cell.id, old=old, new=new, old_release=old_release, new_release=new_release)
    if old is None or new is None:
        return CellChange(kind="ADDED" if old is None else "REMOVED", **base)
    fo, fn = facets(old), facets(new)
    appeared = tuple(sorted(problems(fn) - problems(fo)))
    gone = tuple(sorted(problems(fo) - problems(fn)))
    base.update(appeared=appeared, gone=gone)
    if fo == fn:
        return CellChange(kind="UNCHANGED" if old.status == new.status else "CHANGED", **base)
    if new.status == FLAKY or (old_release and old_release == new_release):
        return CellChange(kind="FLAKY", **base)
    return CellChange(kind="NEW" if appeared else "FIXED" if gone else "CHANGED", **base)


def compare(old: RunResults, new: RunResults) -> Comparison:
    """Every cell of either run, classified; in the new run's order, then the removed ones."""
    olds = {r.cell.id: r for r in old.cells}
    news = {r.cell.id: r for r in new.cells}
    ids = list(news) + [i for i in olds if i not in news]
    out = []
    for i in ids:
        o, n = olds.get(i), news.get(i)
        out.append(classify(o, n, old.release(o) if o else "", new.release(n) if n else ""))
    return Comparison(tuple(out))
