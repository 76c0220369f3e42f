"""Results of the main job: the table people read, results JSON (write and load back), JUnit XML.

One model, ``RunResults`` (the run's metadata plus its ``CellResult``s), feeds every renderer:
JUnit here, KTAP (render_ktap), kcidb (render_kcidb), HTML/Markdown (summary), diffs (compare).
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Iterator, Optional, Sequence

from harness.errors import HarnessError, named_enospc
from harness.pins import confirm
from harness.pins.matrix import Cell, CellResult

FORMAT_VERSION = 1  # the "pinharness" key of results.json
REPORTS_FILE = "reports.txt"  # per-cell symbolized crash reports (matrix.run_cell)
CONSOLE_FILE = "vm/console.log"  # per-cell serial console

# verdict status -> JUnit element (None = passed)
JUNIT_STATUS = {"EXPECTED": None, "KNOWN-BUG": None, "FLAKY": None, "SKIP": "skipped", "ERROR": "error", "CRASH": "failure",
                "UNEXPECTED": "failure", "UNEXPECTED-ALLOW": "failure", "UNEXPECTED-REFUSE": "failure",
                "NO-ORACLE": "failure", "NOT-RUN": "error"}
PASS_STATUSES = {s for s, kind in JUNIT_STATUS.items() if kind is None}


@dataclass
class RunResults:
    """One results.json: the run's metadata (kernels, accel, created, ...) and its cells."""

    cells: list[CellResult]
    meta: dict = field(default_factory=dict)
    path: Optional[Path] = None  # where it was read from (artifact paths resolve against its directory)

    @property
    def created(self) -> str:
        return str(self.meta.get("created", ""))

    @property
    def kernels(self) -> dict:
        return dict(self.meta.get("kernels") or {})

    def release(self, r: CellResult) -> str:
        """The kernel release a cell ran (the run's kernel table when the cell has none)."""
        return r.release or str((self.kernels.get(r.cell.kernel) or {}).get("release", ""))


def effective_status(r: CellResult) -> str:
    """The verdict status, except that a passing status with ok=False counts as UNEXPECTED."""
    return "UNEXPECTED" if r.status in PASS_STATUSES and not r.ok else r.status


def verdict_text(r: CellResult) -> str:
    """The effective status with the confirmation rate: ``UNEXPECTED (reproduced 3/3)``, ``FLAKY (1/3)``."""
    return confirm.verdict_text(effective_status(r), r)


def fails_run(r: CellResult) -> bool:
    """Whether the cell makes `run` exit 1: a surprise (reproduced, or never re-run), a crash, an error."""
    return r.status != "SKIP" and not r.ok


def headline(r: CellResult) -> str:
    """One line saying what happened: the first crash title, else the outcome, else the detail."""
    return (r.titles[0] if r.titles else r.outcome) or r.detail


def artifact(r: CellResult, name: str) -> Optional[Path]:
    """A file in the cell's artifacts directory, if it exists."""
    if not r.artifacts:
        return None
    p = Path(r.artifacts) / name
    return p if p.is_file() else None


def read_tail(path: Optional[Path], limit: int) -> str:
    """The last ``limit`` characters of a text file ('' when absent or unreadable)."""
    if path is None:
        return ""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return text if len(text) <= limit else "[...]\n" + text[-limit:]


def report_text(r: CellResult, limit: int = 12000) -> str:
    """The cell's symbolized crash reports (reports.txt), '' when it has none."""
    return read_tail(artifact(r, REPORTS_FILE), limit).strip()


def excerpt(r: CellResult, limit: int = 12000, console_lines: int = 60) -> str:
    """What to attach to a failure: the crash reports, else the console's last lines."""
    text = report_text(r, limit)
    if text:
        return text
    tail = read_tail(artifact(r, CONSOLE_FILE), limit).splitlines()[-console_lines:]
    return "\n".join(tail)


# --------------------------------------------------------------------------- text table

SHORT_TITLE_MAX = 28  # characters of a title without " in <function>" kept in the outcome column
OUTCOME_COLUMN_MAX = 42
TABLE_WIDTH_MAX = 120  # columns: every row of the terminal table fits


def short_title(title: str) -> str:
    """A report title as the terminal's outcome column shows it: the function after the last
    " in " (``WARNING in ext4_dirty_folio`` -> ``ext4_dirty_folio``; ``EXT4-fs warning in
    mpage_prepare_extent_to_map: page ...`` -> ``mpage_prepare_extent_to_map``), else the title, cut."""
    head, sep, func = title.rpartition(" in ")
    func = func.strip()
    if sep and head and func:
        name = func.split(":", 1)[0] if ":" in func else func
        if name and " " not in name:
            return name
    return title if len(title) <= SHORT_TITLE_MAX else title[:SHORT_TITLE_MAX - 1] + "…"


def terminal_outcome(r: CellResult) -> str:
    """The outcome with short titles, ``WARNING(ext4_dirty_folio)+DATA-LOSS(16)``, fitted to the column:
    when too long, its first and last parts around a ``…`` (the legend and reports.txt have all)."""
    text = r.outcome
    for t in r.titles:
        text = text.replace(f"({t})", f"({short_title(t)})")
    text = text or r.detail
    if len(text) <= OUTCOME_COLUMN_MAX:
        return text
    parts = text.split("+")
    ends = f"{parts[0]}+…+{parts[-1]}" if len(parts) > 2 else ""
    return ends if ends and len(ends) <= OUTCOME_COLUMN_MAX else text[:OUTCOME_COLUMN_MAX - 1] + "…"


def terminal_verdict(r: CellResult) -> str:
    """The verdict in the table: ``KNOWN-BUG 3/3``, ``FLAKY 1/3``, ``UNEXPECTED 3/3 !`` (! fails the run)."""
    rate = f" {r.reproduced}/{r.runs}" if r.runs > 1 else ""
    return effective_status(r) + rate + (" !" if fails_run(r) else "")


def legend(results: Sequence[CellResult]) -> list[str]:
    """Lines naming the full title behind every shortened one, once each."""
    seen = dict.fromkeys(t for r in results for t in r.titles if short_title(t) != t)
    return [f"  {short_title(t)}: {t}" for t in seen]


def table(results: Sequence[CellResult]) -> str:
    """The terminal table: a heading per kernel, then a row per cell, at most TABLE_WIDTH_MAX wide."""
    header = ("workload", "fs", "stressors", "outcome", "lost", "verdict")
    rows: list[tuple] = []
    for r in results:
        lost = f"{r.lost_pages}/{r.device_pages}" if r.device_pages else "-"
        rows.append((r.release or r.cell.kernel, r.cell.kernel, r.cell.workload, r.cell.fs,
                     "+".join(r.cell.stressors), terminal_outcome(r), lost, terminal_verdict(r)))
    widths = [max(len(str(row[i])) for row in [header, *(row[2:] for row in rows)]) for i in range(len(header))]
    line = lambda cells: ("  " + "  ".join(str(c).ljust(w) for c, w in zip(cells, widths))).rstrip()  # noqa: E731
    lines = [line(header), "  " + "  ".join("-" * w for w in widths)]
    kernel = None
    for row in rows:
        if row[0] != kernel:
            kernel = row[0]
            lines.append(f"{kernel} ({row[1]})" if row[1] != kernel else kernel)
        lines.append(line(row[2:]))
    if any(r.runs > 1 for r in results):
        lines += ["", "n/m after a verdict: the runs (a fresh guest each) that showed the first run's outcome; "
                      "! fails the run"]
    notes = legend(results)
    if notes:
        lines += ["", f"titles (full reports: <cell>/{REPORTS_FILE}):"] + notes
    flaky = [r for r in results if confirm.partial(r)]
    if flaky:
        lines += ["", "not reproduced on every run (every run: results.json attempts, <out>/attempt-N/<cell>/):"]
        lines += [f"  {r.cell.id}: {verdict_text(r)}, first run {terminal_outcome(r)}" for r in flaky]
    return "\n".join(lines)


# --------------------------------------------------------------------------- results JSON

@contextlib.contextmanager
def complete_or_absent(path: Path) -> Iterator[None]:
    """Writing ``path``: a failure leaves no half-written file, and a full disk is NoSpace naming it."""
    try:
        with named_enospc(path.parent, f"writing {path.name}"):
            yield
    except BaseException:
        with contextlib.suppress(OSError):
            path.unlink()
        raise


def write_json(results: Sequence[CellResult], path: Path, meta: dict) -> Path:
    doc = {"pinharness": FORMAT_VERSION, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **meta,
           "cells": [r.to_dict() for r in results]}
    with complete_or_absent(path):
        path.write_text(json.dumps(doc, indent=1))
    return path


def cell_result_from_dict(d: dict, cell: Optional[Cell] = None) -> CellResult:
    """The inverse of CellResult.to_dict() (``cell`` given: of attempt_dict()); unknown keys (from a
    newer writer) are ignored; results without confirmation fields read as one run."""
    if cell is None:
        c = d["cell"]
        cell = Cell(str(c["kernel"]), str(c["workload"]), str(c["fs"]), tuple(c["stressors"]))
    names = {f.name for f in fields(CellResult)} - {"cell", "attempts"}
    attempts = [cell_result_from_dict(a, cell) for a in d.get("attempts") or []]
    return CellResult(cell, **{k: v for k, v in d.items() if k in names}, attempts=attempts)


def _resolve_artifacts(r: CellResult, base: Path, attempt: bool = False) -> str:
    """The cell's artifacts directory on this machine: relative paths are relative to the
    results file; for an absolute one (written by `run`), the directory of the same name next
    to the results file wins (the results directory was copied, or downloaded from a CI
    shard), then the path itself. A re-run (``attempt``) lives one level down: attempt-N/<cell>."""
    if not r.artifacts:
        return str(base / r.cell.id)
    p = Path(r.artifacts)
    if not p.is_absolute():
        return str(base / p)
    near = base / p.parent.name / p.name if attempt else base / p.name
    for candidate in (near, p, base / r.cell.id):
        if candidate.is_dir():
            return str(candidate)
    return str(p)


def loads(text: str, path: Optional[Path] = None) -> RunResults:
    """Parse results JSON; every problem is one HarnessError line naming the file and the fix."""
    where = str(path) if path else "results JSON"
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise HarnessError(f"{where}: not JSON ({exc}): pass the results.json a `run` wrote") from None
    if not isinstance(doc, dict) or "pinharness" not in doc or not isinstance(doc.get("cells"), list):
        raise HarnessError(f"{where}: not a pinharness results file (no 'pinharness' version or 'cells' list): "
                           "pass the results.json a `run` wrote")
    if doc["pinharness"] != FORMAT_VERSION:
        raise HarnessError(f"{where}: results format {doc['pinharness']!r}, this pinharness reads "
                           f"{FORMAT_VERSION}: use the pinharness version that wrote it")
    cells = []
    for i, d in enumerate(doc["cells"]):
        try:
            cells.append(cell_result_from_dict(d))
        except (KeyError, TypeError, AttributeError) as exc:
            raise HarnessError(f"{where}: cell #{i + 1} is malformed ({type(exc).__name__}: {exc}): "
                               "re-run the matrix or fix the file") from None
    base = path.parent if path else Path.cwd()
    for r in cells:
        r.artifacts = _resolve_artifacts(r, base)
        for a in r.attempts[1:]:
            a.artifacts = _resolve_artifacts(a, base, attempt=True)
        if r.attempts:
            r.attempts[0].artifacts = r.artifacts
    meta = {k: v for k, v in doc.items() if k not in ("cells", "pinharness")}
    return RunResults(cells, meta, path)


def load(path: Path) -> RunResults:
    """Read a results.json (or the results.json inside a results directory) back into the model."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    try:
        text = path.read_text()
    except OSError as exc:
        raise HarnessError(f"cannot read results {path}: {exc.strerror}: pass a results.json a `run` wrote") from None
    return loads(text, path)


def find(paths: Sequence[Path]) -> list[Path]:
    """results.json files named by ``paths``: files as given; a directory holding results.json
    is that file, any other directory is searched (CI shards downloaded side by side)."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir() and not (p / "results.json").is_file():
            hits = sorted(p.rglob("results.json"))
            if not hits:
                raise HarnessError(f"no results.json below {p}: pass the --out directory of a `run`")
            found += hits
        else:
            found.append(p / "results.json" if p.is_dir() else p)
    return found


def load_many(paths: Sequence[Path]) -> RunResults:
    """One run from the results named by ``paths`` (merged when there are several)."""
    runs = [load(p) for p in find(paths)]
    return runs[0] if len(runs) == 1 else merge(runs)


def merge(runs: Sequence[RunResults]) -> RunResults:
    """One run from several shards: cells concatenated (a cell in two shards is an error),
    kernels united, seconds summed (runner time), accelerators listed if they differ."""
    if not runs:
        raise HarnessError("nothing to merge: pass at least one results.json")
    seen: dict[str, Optional[Path]] = {}
    cells: list[CellResult] = []
    kernels: dict = {}
    for run in runs:
        kernels.update(run.kernels)
        for r in run.cells:
            if r.cell.id in seen:
                raise HarnessError(f"cell {r.cell.id} is in both {seen[r.cell.id]} and {run.path}: "
                                   "the shards overlap; pass each shard's results once")
            seen[r.cell.id] = run.path
            cells.append(r)
    accels = sorted({str(run.meta.get("accel", "")) for run in runs} - {""})
    meta = {"created": min((run.created for run in runs if run.created), default=""),
            "kernels": kernels, "accel": accels[0] if len(accels) == 1 else "+".join(accels),
            "accel_reason": "; ".join(sorted({str(run.meta.get("accel_reason", "")) for run in runs} - {""})),
            "seconds": round(sum(float(run.meta.get("seconds") or 0) for run in runs), 1),
            "merged_from": [str(run.path) if run.path else "" for run in runs]}
    return RunResults(cells, meta)


def write_run(run: RunResults, path: Path) -> Path:
    """Write ``run`` as results.json at ``path``; artifact paths become relative to it when they can."""
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.parent.resolve()
    docs = []
    for r in run.cells:
        d = r.to_dict()
        for doc, res in [(d, r), *zip(d["attempts"], r.attempts)]:
            if res.artifacts:
                doc["artifacts"] = os.path.relpath(Path(res.artifacts).resolve(), base)
        docs.append(d)
    doc = {"pinharness": FORMAT_VERSION, **run.meta, "cells": docs}
    with complete_or_absent(path):
        path.write_text(json.dumps(doc, indent=1))
    return path


# --------------------------------------------------------------------------- JUnit

_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def xml_text(s: str) -> str:
    """``s`` without the characters XML 1.0 cannot carry (console logs have escape codes)."""
    return _XML_INVALID.sub("\ufffd", s)


def _junit_reruns(tc: ET.Element, r: CellResult, kind: Optional[str]) -> None:
    """The confirmation runs, as Maven Surefire's rerun elements (Jenkins and others read them):
    a FLAKY cell passes with a ``flakyFailure``/``flakyError`` per surprising run; a reproduced
    failure or error carries a ``rerunFailure``/``rerunError`` per re-run that failed too."""
    if kind is None and r.status == confirm.FLAKY:
        surprising, prefix = [a for a in r.attempts if not a.ok], "flaky"
    elif kind in ("failure", "error"):
        surprising, prefix = [a for a in r.attempts[1:] if not a.ok], "rerun"
    else:
        return
    for a in surprising:
        tag = prefix + ("Error" if JUNIT_STATUS.get(a.status) == "error" else "Failure")
        el = ET.SubElement(tc, tag, message=xml_text(f"{a.status}: {headline(a)}"[:500]), type=a.status)
        el.text = xml_text(f"{a.outcome or a.detail}\nartifacts: {a.artifacts}")


def write_junit(results: Sequence[CellResult], path: Path) -> Path:
    suite = ET.Element("testsuite", name="pinharness", tests=str(len(results)))
    counts = {"failure": 0, "error": 0, "skipped": 0}
    for r in results:
        tc = ET.SubElement(suite, "testcase", classname=f"pinharness.{r.cell.kernel}", name=r.cell.id,
                           time=f"{r.seconds:.2f}")
        kind = JUNIT_STATUS.get(r.status, "failure")
        if r.status not in ("SKIP",) and not r.ok and kind is None:
            kind = "failure"
        if kind:
            counts[kind] += 1
            el = ET.SubElement(tc, kind, message=xml_text(f"{verdict_text(r)}: {headline(r)}"[:500]))
            el.text = xml_text(r.detail)
        _junit_reruns(tc, r, kind)
        out = ET.SubElement(tc, "system-out")
        text = f"outcome: {r.outcome}\nexpected: {r.expect}\nverdict: {verdict_text(r)}\nartifacts: {r.artifacts}\n"
        text += "".join(f"run {n}: {a.outcome or a.detail} [{a.status}] {a.artifacts}\n"
                        for n, a in enumerate(r.attempts, 1))
        attached = excerpt(r) if kind in ("failure", "error") else ""
        if attached:
            text += f"\n{attached}\n"
        out.text = xml_text(text)
    for k, v in counts.items():
        suite.set({"failure": "failures", "error": "errors", "skipped": "skipped"}[k], str(v))
    with complete_or_absent(path):
        ET.ElementTree(suite).write(path, encoding="unicode", xml_declaration=True)
    return path
