"""kcidb-style JSON (I/O schema v4.3) that KernelCI tooling can ingest.

One checkout and one build per kernel, one test per matrix cell. Ids are
``pinharness:<...>``; a test id carries the run (``run_id``, default the results'
creation time) so every night's tests are distinct. A known bug that behaved as expected
is a FAIL with ``waived: true`` (the kernel is faulty, and nobody needs alerting).
A surprise that did not reproduce on its re-runs (FLAKY) is DONE: no verdict on the kernel;
``misc`` carries the rate (``runs``, ``reproduced``) and every run's outcome (``attempts``).
The crash titles and the symbolized reports (the cell's reports.txt) go into ``log_excerpt``.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Optional
from urllib.parse import quote

from harness.pins.matrix import CellResult
from harness.results.model import CONSOLE_FILE, REPORTS_FILE, RunResults, effective_status, excerpt, verdict_text

ORIGIN = "pinharness"
KCIDB_VERSION = {"major": 4, "minor": 3}  # 4.2 added MISS; nothing here needs more
LOG_EXCERPT_MAX = 16384  # the schema's maxLength
ARCHITECTURE = "x86_64"

# effective verdict status -> kcidb test status
KCIDB_STATUS: dict[str, str] = {
    "EXPECTED": "PASS",
    "KNOWN-BUG": "FAIL",
    "FLAKY": "DONE",  # surprised once in several runs, never again: no verdict on the kernel
    "CRASH": "FAIL",
    "UNEXPECTED": "FAIL",
    "UNEXPECTED-ALLOW": "FAIL",
    "UNEXPECTED-REFUSE": "FAIL",
    "NO-ORACLE": "DONE",  # completed, but nothing says whether the kernel was right
    "ERROR": "ERROR",  # the VM or harness failed: the kernel's status is unknown
    "NOT-RUN": "MISS",
    "SKIP": "SKIP",
}
WAIVED_STATUSES = {"KNOWN-BUG"}
_DATE_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def _slug(text: str, keep: str = "._-") -> str:
    return re.sub(rf"[^A-Za-z0-9{re.escape(keep)}]+", "_", text).strip("_") or "none"


def _kernel_ids(spec: str, release: str) -> tuple[str, str]:
    checkout = f"{ORIGIN}:{_slug(spec)}"
    return checkout, f"{checkout}:{_slug(release or 'unknown')}"


def _url(base_url: Optional[str], r: CellResult, name: str) -> str:
    return f"{base_url.rstrip('/')}/{quote(r.cell.id)}/{name}" if base_url else ""


def _log_excerpt(r: CellResult, status: str) -> str:
    if not r.titles and status in ("PASS", "SKIP"):
        return ""
    head = "\n".join(r.titles) or r.outcome or r.detail
    body = excerpt(r, limit=LOG_EXCERPT_MAX)
    return (f"{head}\n\n{body}" if body else head)[:LOG_EXCERPT_MAX]


def _test(run: RunResults, r: CellResult, run_id: str, base_url: Optional[str]) -> dict:
    verdict = effective_status(r)
    status = KCIDB_STATUS.get(verdict, "FAIL")
    c = r.cell
    test = {
        "id": f"{ORIGIN}:{run_id}:{c.id}",
        "build_id": _kernel_ids(c.kernel, run.release(r))[1],
        "origin": ORIGIN,
        "path": ".".join(_slug(p, "_-") for p in (ORIGIN, c.workload, c.fs, "+".join(c.stressors) or "none")),
        "comment": f"{c.id}: {r.outcome or r.detail} [{verdict_text(r)}]"[:1000],
        "status": status,
        "waived": verdict in WAIVED_STATUSES,
        "duration": float(r.seconds),
        "environment": {"comment": f"QEMU {r.accel or run.meta.get('accel', '')}".strip(),
                        "misc": {"accel": r.accel, "boot_seconds": r.boot_seconds}},
        "misc": {"verdict": verdict, "verdict_text": verdict_text(r), "runs": r.runs, "reproduced": r.reproduced,
                 "attempts": [{"status": a.status, "outcome": a.outcome, "titles": list(a.titles)} for a in r.attempts],
                 "outcome": r.outcome, "expected": r.expect, "titles": list(r.titles),
                 "lost_pages": r.lost_pages, "device_pages": r.device_pages, "pin_errno": r.pin_errno,
                 "fsck_clean": r.fsck_clean, "detail": r.detail, "kernel_spec": c.kernel,
                 "workload": c.workload, "fs": c.fs, "stressors": list(c.stressors)},
    }
    if _DATE_TIME.match(run.created):
        test["start_time"] = run.created
    text = _log_excerpt(r, status)
    if text:
        test["log_excerpt"] = text
    if base_url:
        test["log_url"] = _url(base_url, r, CONSOLE_FILE)
        test["output_files"] = [{"name": Path(n).name, "url": _url(base_url, r, n)} for n in (REPORTS_FILE,)]
    return test


def render(run: RunResults, run_id: Optional[str] = None, base_url: Optional[str] = None) -> dict:
    """The kcidb document; ``base_url`` (where the artifacts are published) adds log URLs."""
    run_id = _slug(run_id or run.created or "run")
    kernels: dict[tuple[str, str], dict] = {}
    for r in run.cells:
        kernels.setdefault((r.cell.kernel, run.release(r)), run.kernels.get(r.cell.kernel) or {})
    checkouts, builds = {}, []
    for (spec, release), info in kernels.items():
        checkout_id, build_id = _kernel_ids(spec, release)
        checkouts.setdefault(checkout_id, {"id": checkout_id, "origin": ORIGIN, "tree_name": spec, "valid": True,
                                           "misc": {"kernel_spec": spec, "source": info.get("source", spec)}})
        builds.append({"id": build_id, "checkout_id": checkout_id, "origin": ORIGIN, "architecture": ARCHITECTURE,
                       "config_name": str(info.get("name") or spec), "valid": True,
                       "misc": {"release": release, "image": info.get("image")}})
    return {"version": dict(KCIDB_VERSION), "checkouts": list(checkouts.values()), "builds": builds,
            "tests": [_test(run, r, run_id, base_url) for r in run.cells]}


def write_kcidb(run: RunResults, path: Path, run_id: Optional[str] = None, base_url: Optional[str] = None) -> Path:
    path.write_text(json.dumps(render(run, run_id, base_url), indent=1))
    return path
