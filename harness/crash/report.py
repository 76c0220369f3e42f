"""Crash reports as people and tools read them: syzbot-like text and JSON,
symbolized with the kernel's DWARF when we have it."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from harness.crash import console
from harness.crash.console import CrashReport


def symbolize_for_kernel(reports: list[CrashReport], kernel) -> Optional[str]:
    """Decode ``reports`` in place with the kernel's vmlinux and debug modules, when known.
    Returns why it could not (never raises: a report is never lost over symbolization)."""
    if getattr(kernel, "vmlinux", None) is None:
        return "no vmlinux with DWARF for this kernel (Debian: `python -m harness fetch-dbg --kernel debian:6.1`)"
    try:
        from harness.crash import symbolize

        symbolize.symbolize(reports, kernel.vmlinux, kernel.debug_modules_dir or kernel.modules_dir)
        return None
    except Exception as exc:  # symbolization is a bonus
        return f"{type(exc).__name__}: {exc}"


def write_reports(path: Path, reports: list[CrashReport], kernel=None) -> Optional[str]:
    """reports.txt for an artifact directory (symbolized when possible); returns the symbolizer's problem."""
    problem = symbolize_for_kernel(reports, kernel) if kernel is not None and reports else None
    text = render_text(reports)
    if problem and reports:
        text += f"\n(stacks not decoded: {problem})\n"
    path.write_text(text)
    return problem


def crash_json(rep: CrashReport) -> dict:
    return {
        "title": rep.title,
        "alt_titles": rep.alt_titles,
        "type": rep.type,
        "subtype": rep.subtype,
        "corrupted": rep.corrupted,
        "corrupted_reason": rep.corrupted_reason,
        "guilty_file": rep.guilty_file,
        "frames": [{"function": f.function, "offset": f.offset, "file": f.file, "line": f.line,
                    "inlined": f.inlined} for f in rep.frames],
        "report": rep.report,
    }


def render_json(reports: list[CrashReport]) -> str:
    return json.dumps({"crashes": [crash_json(r) for r in reports]}, indent=2) + "\n"


def render_text(reports: list[CrashReport]) -> str:
    groups = console.dedup(reports)
    if not groups:
        return "no crash found\n"
    parts = []
    for i, (rep, count) in enumerate(groups, 1):
        seen = f" (seen {count} times)" if count > 1 else ""
        kind = f"{rep.type} ({rep.subtype})" if rep.subtype else rep.type
        lines = [f"==== crash {i}/{len(groups)}: {rep.title}{seen}", f"type: {kind}"]
        if rep.guilty_file:
            lines.append(f"guilty file: {rep.guilty_file}")
        if rep.corrupted:
            lines.append(f"corrupted: {rep.corrupted_reason}")
        if rep.alt_titles:
            lines.append("also known as: " + "; ".join(rep.alt_titles))
        lines.append("")
        lines.append(rep.report.rstrip("\n"))
        parts.append("\n".join(lines) + "\n")
    return "\n".join(parts)

