"""kcidb JSON: validated against the I/O schema v4.3's required fields and shapes (a small
validator here), and against kcidb-io itself when it is installed."""
import json
import re

import pytest

from harness.results.kcidb import KCIDB_STATUS, KCIDB_VERSION, LOG_EXCERPT_MAX, render, write_kcidb
from harness.results.model import JUNIT_STATUS
from results_samples import EVIL_TITLE, WARN_TITLE, cell_results, sample_run

ID = re.compile(r"^[a-z0-9_]+:.*$")
ORIGIN = re.compile(r"^[a-z0-9_]+$")
# object -> (required properties, allowed properties), as in kcidb-io's schema v4.3
SCHEMA = {
    "checkouts": ({"id", "origin"},
                  {"_timestamp", "id", "origin", "tree_name", "git_repository_url", "git_commit_hash",
                   "git_commit_name", "git_repository_branch", "patchset_files", "patchset_hash", "message_id",
                   "comment", "start_time", "contacts", "log_url", "log_excerpt", "valid", "misc"}),
    "builds": ({"id", "origin", "checkout_id"},
               {"_timestamp", "checkout_id", "id", "origin", "comment", "start_time", "duration", "architecture",
                "command", "compiler", "input_files", "output_files", "config_name", "config_url", "log_url",
                "log_excerpt", "valid", "misc"}),
    "tests": ({"id", "origin", "build_id"},
              {"_timestamp", "build_id", "id", "origin", "environment", "path", "comment", "log_url",
               "log_excerpt", "status", "waived", "start_time", "duration", "output_files", "misc"}),
}
STATUSES = {"FAIL", "ERROR", "MISS", "PASS", "DONE", "SKIP"}
TYPES = {"valid": bool, "waived": bool, "duration": (int, float), "misc": dict, "environment": dict,
         "log_excerpt": str, "comment": str, "path": str, "tree_name": str, "architecture": str}


def validate(doc: dict) -> list[str]:
    """The problems a kcidb v4 submission has against the schema's rules that matter here."""
    problems = []
    version = doc.get("version", {})
    if version.get("major") != 4 or not 0 <= version.get("minor", 0) <= 5 or set(version) - {"major", "minor"}:
        problems.append(f"version {version}")
    problems += [f"unknown top-level {k}" for k in set(doc) - {"version", *SCHEMA}]
    for kind, (required, allowed) in SCHEMA.items():
        for obj in doc.get(kind, []):
            problems += [f"{kind}: {obj.get('id')} lacks {k}" for k in required - set(obj)]
            problems += [f"{kind}: {obj.get('id')} has unknown {k}" for k in set(obj) - allowed]
            problems += [f"{kind}: bad {k} {obj[k]!r}" for k in ("id", "checkout_id", "build_id")
                         if k in obj and not ID.match(obj[k])]
            problems += [f"{kind}: bad {k}" for k, t in TYPES.items() if k in obj and not isinstance(obj[k], t)]
            if not ORIGIN.match(obj.get("origin", "")):
                problems.append(f"{kind}: bad origin")
            if "status" in obj and obj["status"] not in STATUSES:
                problems.append(f"{kind}: bad status {obj['status']}")
            if len(obj.get("log_excerpt", "")) > LOG_EXCERPT_MAX:
                problems.append(f"{kind}: log_excerpt too long")
            if "path" in obj and not re.fullmatch(r"[.a-zA-Z0-9_-]*", obj["path"]):
                problems.append(f"{kind}: bad path {obj['path']}")
            if "environment" in obj and set(obj["environment"]) - {"comment", "misc"}:
                problems.append(f"{kind}: bad environment")
    return problems


def test_every_status_has_a_kcidb_status():
    assert set(JUNIT_STATUS) <= set(KCIDB_STATUS) and set(KCIDB_STATUS.values()) <= STATUSES


def test_the_validator_catches_problems():
    assert validate({"version": {"major": 3}, "tests": [{"id": "nocolon", "origin": "Bad!", "status": "OK"}]})


def test_valid_and_linked(tmp_path):
    run = sample_run(tmp_path / "run")
    doc = json.loads(write_kcidb(run, tmp_path / "kcidb.json", run_id="gh123").read_text())
    assert validate(doc) == []
    assert doc["version"] == KCIDB_VERSION
    assert len(doc["checkouts"]) == 2 and len(doc["builds"]) == 2 and len(doc["tests"]) == len(run.cells)
    builds = {b["id"] for b in doc["builds"]}
    assert {b["checkout_id"] for b in doc["builds"]} == {c["id"] for c in doc["checkouts"]}
    assert all(t["build_id"] in builds for t in doc["tests"])
    assert len({t["id"] for t in doc["tests"]}) == len(run.cells)
    assert all(t["id"].startswith("pinharness:gh123:") for t in doc["tests"])


def test_statuses_titles_and_reports(tmp_path):
    run = sample_run(tmp_path / "run")
    tests = {t["misc"]["workload"] + "/" + t["misc"]["fs"] + "/" + t["build_id"].split(":")[-1]: t
             for t in render(run)["tests"]}
    known = tests["odirect/ext4/6.1.0-26-amd64"]
    assert (known["status"], known["waived"]) == ("FAIL", True)
    assert known["log_excerpt"].startswith(WARN_TITLE)
    assert "unpin_user_pages_dirty_lock+0x10e/0x190 mm/gup.c:350" in known["log_excerpt"]  # the symbolized report
    assert tests["io_uring/xfs/6.12.9-amd64"]["status"] == "FAIL"
    assert EVIL_TITLE in tests["io_uring/xfs/6.12.9-amd64"]["log_excerpt"]
    assert tests["odirect/ext4/6.12.9-amd64"]["status"] == "PASS"
    assert "log_excerpt" not in tests["odirect/ext4/6.12.9-amd64"]
    assert tests["vfio/ext4/6.12.9-amd64"]["status"] == "SKIP"
    assert tests["io_uring/ext4/6.1.0-26-amd64"]["status"] == "ERROR"
    assert tests["io_uring/ext4/6.12.9-amd64"]["status"] == "DONE"
    assert tests["vfio/ext4/6.12.9-amd64"]["path"] == "pinharness.vfio.ext4.bh-fill_reclaim"


def test_not_run_is_miss_and_excerpt_is_capped(tmp_path):
    cells = cell_results(tmp_path / "run")
    cells[5].status = "NOT-RUN"
    run = sample_run(tmp_path / "run", cells)
    (tmp_path / "run" / cells[0].cell.id / "reports.txt").write_text("x" * 50000)
    doc = render(run, base_url="https://ci.example/run/7")
    assert validate(doc) == []
    assert doc["tests"][5]["status"] == "MISS"
    assert len(doc["tests"][0]["log_excerpt"]) == LOG_EXCERPT_MAX
    assert doc["tests"][0]["log_url"] == "https://ci.example/run/7/debian-6.1-odirect-ext4-reclaim/vm/console.log"


def test_kcidb_io_accepts_it(tmp_path):
    schema = pytest.importorskip("kcidb_io.schema", reason="kcidb-io not installed (pip install kcidb-io)")
    doc = render(sample_run(tmp_path / "run"), base_url="https://ci.example/run/7")
    schema.V4_3.validate(doc)
    assert schema.V4_3.is_valid(doc)


def test_confirmed_cells_are_valid_with_their_rate(tmp_path):
    from results_samples import confirmed_results

    run = sample_run(tmp_path / "run", confirmed_results(tmp_path / "run"))
    doc = render(run)
    assert validate(doc) == []
    assert [(t["status"], t["misc"]["verdict_text"]) for t in doc["tests"]] == [
        ("FAIL", "UNEXPECTED (reproduced 3/3)"), ("DONE", "FLAKY (1/3)"), ("FAIL", "KNOWN-BUG (reproduced 2/3)")]
