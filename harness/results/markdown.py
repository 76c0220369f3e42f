"""Markdown for a CI job summary ($GITHUB_STEP_SUMMARY): the matrix and "since last run".

Text comes from kernel logs: it is HTML-escaped (GitHub renders inline HTML) and Markdown's
specials are backslashed, one line per value.
"""
from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Optional

from harness.pins.matrix import CellResult
from harness.results.model import RunResults, effective_status, verdict_text
from harness.results.summary import (CHANGE_STYLE, DETAIL_STATUSES, Summary, accel_note, build, headline, lost_text,
                                     runs_text, short_outcome, style)

_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")


def md(text: object) -> str:
    """Markdown-safe text: HTML-escaped (GitHub renders inline HTML), specials backslashed, one line."""
    one_line = re.sub(r"\s+", " ", str(text)).strip()
    return _MD_SPECIAL.sub(r"\\\1", html.escape(one_line, quote=False))


def _md_slot(cells: list[CellResult], s: Summary) -> str:
    parts = []
    for r in cells:
        status = effective_status(r)
        bits = [f"{style(status)[2]} **{md(verdict_text(r))}**"] + ([md(short_outcome(r))] if short_outcome(r) else [])
        if s.changes.get(r.cell.id):
            bits[0] += f" {CHANGE_STYLE.get(s.changes[r.cell.id], ('', '', ''))[2]} {md(s.changes[r.cell.id])}"
        if lost_text(r):
            bits.append(md(lost_text(r)))
        bits += [md(t) for t in r.titles]
        if status in DETAIL_STATUSES:
            bits.append(md(r.detail[:160]))
        if len(cells) > 1:
            bits.append("stressors " + md("+".join(r.cell.stressors)))
        if r.attempts:
            bits.append(md(runs_text(r)))
        parts.append("<br>".join(bits))
    return "<br><br>".join(parts) or "not in this run"


def render_markdown(s: Summary, title: str = "pinharness matrix") -> str:
    out = [f"## {md(title)}", "", md(headline(s)), "", md(accel_note(s.run)), ""]
    if s.columns:
        out.append("| kernel | " + " | ".join(f"{md(w)} / {md(fs)}" for w, fs in s.columns) + " |")
        out.append("|---" * (len(s.columns) + 1) + "|")
    else:
        out.append("No cells in this run.")
    for k in s.kernels:
        cells = [_md_slot(s.slots.get((k, w, fs), []), s) for w, fs in s.columns]
        out.append(f"| **{md(k)}**<br>{md(s.release(k))} | " + " | ".join(cells) + " |")
    if s.not_every_run:
        out += ["", "### Flaky: not reproduced on every run", ""]
        out += [f"- {md(r.cell.id)}: **{md(verdict_text(r))}**, {md(runs_text(r))}" for r in s.not_every_run]
    out += ["", "### Since last run", ""]
    if s.comparison is None:
        out.append("No previous results to compare with.")
        return "\n".join(out) + "\n"
    out.append(md(s.comparison.summary()))
    for kind, (_, heading, marker) in CHANGE_STYLE.items():
        changes = s.comparison.of(kind)
        if not changes:
            continue
        out += ["", f"**{marker} {md(heading)}** ({len(changes)})", ""]
        for c in changes:
            rel = c.releases.replace("->", "→")
            extra = "".join(f"; \\+ {md(p)}" for p in c.appeared) + "".join(f"; \\- {md(p)}" for p in c.gone)
            out.append(f"- {md(c.cell_id)} ({md(rel)}): {md(c.old_outcome or '–')} → "
                       f"{md(c.new_outcome or '–')}{extra}")
    return "\n".join(out) + "\n"


def write_markdown(run: RunResults, path: Path, previous: Optional[RunResults] = None,
                   title: str = "pinharness matrix") -> Path:
    path.write_text(render_markdown(build(run, previous), title))
    return path
