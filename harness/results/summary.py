"""The page people look at: the matrix as a coloured table plus "since last run".

``build(run, previous)`` makes a ``Summary`` (the grid: rows = kernels, columns = workload ×
fs, each slot the cells of that kernel/workload/fs, one per stressor set; and the comparison
with the previous run). ``render_html`` (here: one self-contained page, inline CSS, no external
assets) and ``markdown`` (markdown.py, for a CI job summary) print it.
Titles come from kernel logs, so every string is escaped.
"""
from __future__ import annotations

import html
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional
from urllib.parse import quote

from harness.results.compare import Comparison, compare
from harness.pins.matrix import CellResult
from harness.pins import confirm
from harness.results.model import CONSOLE_FILE, REPORTS_FILE, RunResults, artifact, effective_status, verdict_text

# effective verdict status -> (background colour, legend text, Markdown marker)
STATUS_STYLE: dict[str, tuple[str, str, str]] = {
    "EXPECTED": ("#cdebd3", "as the oracle expects", "🟩"),
    "KNOWN-BUG": ("#fbe7a1", "a known kernel bug, as expected", "🟨"),
    "FLAKY": ("#e9e3c9", "surprised once, not reproduced by the re-runs", "🔸"),
    "UNEXPECTED": ("#f4b4b8", "not what the oracle expects", "🟥"),
    "UNEXPECTED-ALLOW": ("#f4b4b8", "the pin was allowed, expected refused", "🟥"),
    "UNEXPECTED-REFUSE": ("#f6cfa8", "the pin was refused, expected allowed", "🟧"),
    "CRASH": ("#e3838b", "the guest crashed", "💥"),
    "NO-ORACLE": ("#cfe2f5", "no oracle row for this cell", "🟦"),
    "ERROR": ("#dccdf0", "the VM or harness failed", "🟪"),
    "NOT-RUN": ("#e4e4e4", "not run", "⬜"),
    "SKIP": ("#eeeeee", "skipped (kernel config)", "⬜"),
}
OTHER_STYLE = ("#f4b4b8", "unknown status", "🟥")
DETAIL_STATUSES = {"SKIP", "ERROR", "NOT-RUN"}  # statuses whose detail (why) is shown in the cell

# change kind (compare.py) -> (badge colour, heading, Markdown marker); the order is the report's
CHANGE_STYLE: dict[str, tuple[str, str, str]] = {
    "NEW": ("#c62828", "New problems", "🆕"),
    "FIXED": ("#2e7d32", "Fixed", "✅"),
    "CHANGED": ("#1565c0", "Changed outcomes", "🔁"),
    "FLAKY": ("#8d6e00", "Flaky (outcome changed, kernel release did not)", "🎲"),
    "ADDED": ("#555555", "Cells new to the matrix", "➕"),
    "REMOVED": ("#555555", "Cells gone from the matrix", "➖"),
}


def style(status: str) -> tuple[str, str, str]:
    return STATUS_STYLE.get(status, OTHER_STYLE)


@dataclass
class Summary:
    run: RunResults
    kernels: list[str]  # row keys (kernel specs), in run order
    columns: list[tuple[str, str]]  # (workload, fs), in run order
    slots: dict[tuple[str, str, str], list[CellResult]]  # (kernel, workload, fs) -> cells
    comparison: Optional[Comparison] = None
    previous: Optional[RunResults] = None
    changes: dict[str, str] = field(default_factory=dict)  # cell id -> change kind (not UNCHANGED)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.run.cells:
            s = effective_status(r)
            out[s] = out.get(s, 0) + 1
        return out

    @property
    def not_every_run(self) -> list[CellResult]:
        """Confirmed cells whose first outcome did not show on every run (FLAKY, known bugs below n/n)."""
        return [r for r in self.run.cells if confirm.partial(r)]

    def release(self, kernel: str) -> str:
        rels = {self.run.release(r) for r in self.run.cells if r.cell.kernel == kernel} - {""}
        return ", ".join(sorted(rels)) or str((self.run.kernels.get(kernel) or {}).get("release", ""))


def build(run: RunResults, previous: Optional[RunResults] = None) -> Summary:
    slots: dict[tuple[str, str, str], list[CellResult]] = {}
    for r in run.cells:
        slots.setdefault((r.cell.kernel, r.cell.workload, r.cell.fs), []).append(r)
    kernels = list(dict.fromkeys(r.cell.kernel for r in run.cells))
    workloads = list(dict.fromkeys(r.cell.workload for r in run.cells))
    fss = list(dict.fromkeys(r.cell.fs for r in run.cells))
    present = {(r.cell.workload, r.cell.fs) for r in run.cells}
    columns = [(w, fs) for w in workloads for fs in fss if (w, fs) in present]
    cmp = compare(previous, run) if previous is not None else None
    changes = {c.cell_id: c.kind for c in cmp.changes if c.kind != "UNCHANGED"} if cmp else {}
    return Summary(run, kernels, columns, slots, cmp, previous, changes)


def _without_titles(r: CellResult) -> str:
    text = r.outcome
    for t in r.titles:
        text = text.replace(f"({t})", "")
    return text


def short_outcome(r: CellResult) -> str:
    """The outcome without the titles (they are listed, and linked, separately); '' when that
    would only repeat the verdict (a CRASH cell's outcome is CRASH(title))."""
    text = _without_titles(r)
    return "" if text == r.status else text


def runs_text(r: CellResult) -> str:
    """Every run of a confirmed cell, one outcome each (titles left out): 'runs: PIN-LEAK(1), CLEAN, CLEAN'."""
    return "runs: " + ", ".join(_without_titles(a) or a.status for a in r.attempts) if r.attempts else ""


def lost_text(r: CellResult) -> str:
    return f"lost {r.lost_pages} of {r.device_pages} pages" if r.lost_pages else ""


def report_link(r: CellResult, page_dir: Path) -> Optional[str]:
    """The cell's decoded report (else its console log) relative to the page, URL-quoted."""
    target = artifact(r, REPORTS_FILE) or artifact(r, CONSOLE_FILE)
    if target is None:
        return None
    return quote(os.path.relpath(target.resolve(), page_dir.resolve()).replace(os.sep, "/"))


def headline(s: Summary) -> str:
    counts = s.counts()
    order = [k for k in STATUS_STYLE if k in counts] + sorted(set(counts) - set(STATUS_STYLE))
    return f"{len(s.run.cells)} cells: " + ", ".join(f"{counts[k]} {k}" for k in order)


def accel_note(run: RunResults) -> str:
    accel = str(run.meta.get("accel") or "?")
    reason = str(run.meta.get("accel_reason") or "")
    note = f"accelerator {accel}" + (f" ({reason})" if reason else "")
    if "tcg" in accel.split("+"):
        note += " — TCG is emulation: timings are slow and races may play out differently than on KVM"
    return note


# --------------------------------------------------------------------------- HTML

CSS = """
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #1d1d1d; }
h1 { font-size: 22px; margin: 0 0 4px; } h2 { font-size: 17px; margin: 28px 0 8px; }
.meta { color: #555; margin: 2px 0; } .warn { color: #8a4b00; }
table { border-collapse: collapse; } th, td { border: 1px solid #bbb; padding: 6px 8px; vertical-align: top; }
th { background: #f2f2f2; text-align: left; } thead th { text-align: center; }
td.slot { min-width: 150px; max-width: 260px; } .res + .res { border-top: 1px dashed #888; margin-top: 6px; padding-top: 6px; }
.verdict { font-weight: 600; font-size: 12px; letter-spacing: .02em; }
.outcome { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 12px; word-break: break-word; }
.lost { font-size: 12px; font-weight: 600; } .small { font-size: 11px; color: #444; }
ul.titles { margin: 3px 0 0; padding-left: 16px; font-size: 12px; } ul.titles a { color: #0b3d91; }
.badge { display: inline-block; color: #fff; border-radius: 3px; padding: 0 5px; font-size: 11px; margin-left: 4px; }
.chip { display: inline-block; padding: 1px 8px; margin: 2px 4px 2px 0; border-radius: 10px; border: 1px solid #999; }
.legend span { display: inline-block; padding: 2px 8px; margin: 2px; border: 1px solid #aaa; font-size: 12px; }
td.changes { font-size: 12px; } td.empty { background: #fff; color: #999; font-size: 12px; } .kernel { white-space: nowrap; }
"""


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _status_css() -> str:
    rules = [f".st-{k} {{ background: {bg}; }}" for k, (bg, _, _) in STATUS_STYLE.items()]
    return "\n".join(rules + [f".st-other {{ background: {OTHER_STYLE[0]}; }}"])


def _css_class(status: str) -> str:
    return f"st-{status}" if status in STATUS_STYLE else "st-other"


def _html_result(r: CellResult, s: Summary, page_dir: Path, several: bool) -> str:
    status = effective_status(r)
    change = s.changes.get(r.cell.id)
    badge = (f'<span class="badge" style="background:{CHANGE_STYLE[change][0]}">{esc(change)}</span>'
             if change in CHANGE_STYLE else "")
    href = report_link(r, page_dir)
    titles = "".join(f'<li><a href="{esc(href)}">{esc(t)}</a></li>' if href else f"<li>{esc(t)}</li>"
                     for t in r.titles)
    parts = [f'<div class="res" title="{esc(r.detail)}"><span class="verdict">{esc(verdict_text(r))}</span>{badge}']
    if short_outcome(r):
        parts.append(f'<div class="outcome">{esc(short_outcome(r))}</div>')
    if lost_text(r):
        parts.append(f'<div class="lost">{esc(lost_text(r))}</div>')
    if titles:
        parts.append(f'<ul class="titles">{titles}</ul>')
    elif href and status not in ("EXPECTED", "SKIP"):
        parts.append(f'<div class="small"><a href="{esc(href)}">console log</a></div>')
    small = [f"expected {r.expect}" if r.expect else "", "stressors " + "+".join(r.cell.stressors) if several else "",
             runs_text(r)]
    if status in DETAIL_STATUSES:
        small.append(r.detail)
    parts += [f'<div class="small">{esc(x)}</div>' for x in small if x]
    return "".join(parts) + "</div>"


def _html_matrix(s: Summary, page_dir: Path) -> str:
    workloads = list(dict.fromkeys(w for w, _ in s.columns))  # columns are grouped by workload
    head1 = "".join(f'<th colspan="{sum(1 for w2, _ in s.columns if w2 == w)}">{esc(w)}</th>' for w in workloads)
    head2 = "".join(f"<th>{esc(fs)}</th>" for _, fs in s.columns)
    rows = []
    for k in s.kernels:
        tds = []
        for w, fs in s.columns:
            cells = s.slots.get((k, w, fs), [])
            if not cells:
                tds.append('<td class="slot empty">not in this run</td>')
                continue
            worst = max((effective_status(r) for r in cells), key=_severity)
            inner = "".join(_html_result(r, s, page_dir, len(cells) > 1) for r in cells)
            tds.append(f'<td class="slot {_css_class(worst)}">{inner}</td>')
        rows.append(f'<tr><th class="kernel">{esc(k)}<div class="small">{esc(s.release(k))}</div></th>'
                    + "".join(tds) + "</tr>")
    return (f'<table class="matrix"><thead><tr><th rowspan="2">kernel</th>{head1}</tr><tr>{head2}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")


def _severity(status: str) -> int:
    """How much a status wants to colour a slot holding several cells (higher wins)."""
    order = ["SKIP", "NOT-RUN", "EXPECTED", "KNOWN-BUG", "FLAKY", "NO-ORACLE", "ERROR", "UNEXPECTED-REFUSE",
             "UNEXPECTED-ALLOW", "UNEXPECTED", "CRASH"]
    return order.index(status) if status in order else len(order)


def _html_since(s: Summary) -> str:
    if s.comparison is None:
        return "<p>No previous results to compare with.</p>"
    prev = s.previous.path if s.previous and s.previous.path else "the previous run"
    out = [f'<p class="meta">compared with {esc(prev)} ({esc(s.previous.created if s.previous else "")}): '
           f"{esc(s.comparison.summary())}</p>"]
    for kind, (colour, heading, _) in CHANGE_STYLE.items():
        changes = s.comparison.of(kind)
        if not changes:
            continue
        rows = "".join(
            f"<tr><td>{esc(c.cell_id)}</td><td>{esc(c.releases.replace('->', '→'))}</td>"
            f"<td>{esc(c.old_outcome or '–')}</td><td>{esc(c.new_outcome or '–')}</td>"
            f'<td class="changes">{"<br>".join(esc("+ " + p) for p in c.appeared)}'
            f'{"<br>" if c.appeared and c.gone else ""}{"<br>".join(esc("- " + p) for p in c.gone)}</td></tr>'
            for c in changes)
        out.append(f'<h3><span class="badge" style="background:{colour}">{esc(kind)}</span> {esc(heading)} '
                   f"({len(changes)})</h3><table><tr><th>cell</th><th>release</th><th>before</th><th>now</th>"
                   f"<th>problems</th></tr>{rows}</table>")
    return "".join(out)


def _html_not_every_run(s: Summary) -> str:
    cells = s.not_every_run
    if not cells:
        confirmed = sum(1 for r in s.run.cells if r.runs > 1)
        return (f"<p>All {confirmed} re-run cells showed their first outcome on every run.</p>" if confirmed
                else "<p>No cell was re-run.</p>")
    rows = "".join(f"<tr><td>{esc(r.cell.id)}</td><td>{esc(verdict_text(r))}</td><td>{esc(r.outcome or r.detail)}</td>"
                   f"<td>{esc(runs_text(r))}</td></tr>" for r in cells)
    return (f"<table><tr><th>cell</th><th>verdict</th><th>first run</th><th>every run</th></tr>{rows}</table>")


def render_html(s: Summary, page_dir: Path, title: str = "pinharness matrix") -> str:
    kernels = "".join(f"<tr><td>{esc(k)}</td><td>{esc(s.release(k))}</td>"
                      f"<td>{esc((s.run.kernels.get(k) or {}).get('source', ''))}</td></tr>" for k in s.kernels)
    counts = s.counts()
    chips = "".join(f'<span class="chip {_css_class(k)}">{esc(k)}: {n}</span>'
                    for k, n in sorted(counts.items(), key=lambda kv: -_severity(kv[0])))
    legend = "".join(f'<span class="{_css_class(k)}">{esc(k)}: {esc(text)}</span>'
                     for k, (_, text, _) in STATUS_STYLE.items())
    accel = accel_note(s.run)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>{CSS}{_status_css()}</style></head>
<body>
<h1>{esc(title)}</h1>
<p class="meta">{esc(s.run.created or "")} · {esc(len(s.run.cells))} cells · {esc(s.run.meta.get("seconds", "?"))} s</p>
<p class="meta{' warn' if 'TCG' in accel else ''}">{esc(accel)}</p>
<p>{chips}</p>
<h2>Matrix</h2>
{_html_matrix(s, page_dir)}
<p class="legend">{legend}</p>
<h2>Flaky: not reproduced on every run</h2>
{_html_not_every_run(s)}
<h2>Since last run</h2>
{_html_since(s)}
<h2>Kernels</h2>
<table><tr><th>spec</th><th>release</th><th>source</th></tr>{kernels}</table>
</body></html>
"""


def write_html(run: RunResults, path: Path, previous: Optional[RunResults] = None,
               title: str = "pinharness matrix") -> Path:
    path.write_text(render_html(build(run, previous), page_dir=path.parent, title=title))
    return path
