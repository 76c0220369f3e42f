"""Results of the main job: the table people read, results JSON, JUnit XML."""
from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Sequence

from harness.matrix import CellResult

# verdict status -> JUnit element (None = passed)
JUNIT_STATUS = {"EXPECTED": None, "KNOWN-BUG": None, "SKIP": "skipped", "ERROR": "error", "CRASH": "failure",
                "UNEXPECTED": "failure", "UNEXPECTED-ALLOW": "failure", "UNEXPECTED-REFUSE": "failure",
                "NO-ORACLE": "failure", "NOT-RUN": "error"}


def table(results: Sequence[CellResult]) -> str:
    rows = [("kernel", "workload", "fs", "stressors", "outcome", "lost", "verdict")]
    for r in results:
        lost = f"{r.lost_pages}/{r.device_pages}" if r.device_pages else "-"
        verdict = r.status + ("" if r.ok or r.status in ("SKIP",) else " !")
        rows.append((r.release or r.cell.kernel, r.cell.workload, r.cell.fs, "+".join(r.cell.stressors),
                     r.outcome or r.detail[:60], lost, verdict))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_json(results: Sequence[CellResult], path: Path, meta: dict) -> Path:
    doc = {"pinharness": 1, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **meta,
           "cells": [r.to_dict() for r in results]}
    path.write_text(json.dumps(doc, indent=1))
    return path


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
            msg = (r.titles[0] if r.titles else r.outcome) or r.detail
            el = ET.SubElement(tc, kind, message=f"{r.status}: {msg}"[:500])
            el.text = r.detail
        out = ET.SubElement(tc, "system-out")
        out.text = f"outcome: {r.outcome}\nexpected: {r.expect}\nverdict: {r.status}\nartifacts: {r.artifacts}\n"
    for k, v in counts.items():
        suite.set({"failure": "failures", "error": "errors", "skipped": "skipped"}[k], str(v))
    ET.ElementTree(suite).write(path, encoding="unicode", xml_declaration=True)
    return path
