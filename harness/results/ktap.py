"""KTAP (version 1) for kselftest-minded users: one test per matrix cell.

Per cell: diagnostic lines (``# outcome: ...``, ``# title: ...``) and then its result line,
``ok N <cell id>`` / ``not ok N <cell id>``, with ``# SKIP <reason>`` for skipped cells and
``# XFAIL`` (as kselftest prints it) for a known kernel bug that behaved as expected. A cell that
ran more than once (confirmation) says so in its verdict line (``verdict UNEXPECTED (reproduced
3/3)``, ``verdict FLAKY (1/3)``: ``ok``) and lists every run (``# run 2: CLEAN [EXPECTED]``).
"""
from __future__ import annotations

import re
from pathlib import Path

from harness.results.model import RunResults, effective_status, verdict_text

# effective verdict status -> (KTAP result, directive)
KTAP_STATUS: dict[str, tuple[str, str]] = {
    "EXPECTED": ("ok", ""),
    "KNOWN-BUG": ("ok", "XFAIL"),
    "FLAKY": ("ok", ""),  # surprised once, not reproduced: the rate is in the diagnostics
    "SKIP": ("ok", "SKIP"),
    "CRASH": ("not ok", ""),
    "UNEXPECTED": ("not ok", ""),
    "UNEXPECTED-ALLOW": ("not ok", ""),
    "UNEXPECTED-REFUSE": ("not ok", ""),
    "NO-ORACLE": ("not ok", ""),
    "ERROR": ("not ok", ""),
    "NOT-RUN": ("not ok", ""),
}


def _line(text: str) -> str:
    """One line of KTAP-safe text: no newlines, no '#' (it would start a directive)."""
    return re.sub(r"\s+", " ", text.replace("#", "No.")).strip()


def render(run: RunResults) -> str:
    lines = ["KTAP version 1", f"1..{len(run.cells)}"]
    if run.meta.get("accel"):
        lines.append(f"# pinharness: accel {_line(str(run.meta['accel']))}; created {_line(run.created)}")
    for n, r in enumerate(run.cells, 1):
        status = effective_status(r)
        result, directive = KTAP_STATUS.get(status, ("not ok", ""))
        lines.append(f"# {r.cell.id}: kernel {_line(run.release(r) or r.cell.kernel)}, verdict {verdict_text(r)}")
        if r.outcome:
            lines.append(f"# outcome: {_line(r.outcome)}")
        if r.expect:
            lines.append(f"# expected: {_line(r.expect)}")
        lines += [f"# title: {_line(t)}" for t in r.titles]
        if r.detail and status != "SKIP":
            lines.append(f"# detail: {_line(r.detail)}")
        lines += [f"# run {i}: {_line(a.outcome or a.detail)} [{a.status}]" for i, a in enumerate(r.attempts, 1)]
        suffix = ""
        if directive == "SKIP":
            suffix = f" # SKIP {_line(r.detail)}".rstrip()
        elif directive:
            suffix = f" # {directive} {_line(r.outcome)}".rstrip()
        lines.append(f"{result} {n} {_line(r.cell.id)}{suffix}")
    return "\n".join(lines) + "\n"


def write_ktap(run: RunResults, path: Path) -> Path:
    path.write_text(render(run))
    return path
