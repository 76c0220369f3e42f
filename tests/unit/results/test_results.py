"""results.py: results.json written and loaded back, artifact paths, merging shards, JUnit."""
import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.results import model as results
from harness.errors import HarnessError
from results_samples import EVIL_TITLE, WARN_TITLE, cell_results, sample_run


def test_round_trip_keeps_every_field(tmp_path):
    cells = cell_results(tmp_path / "run")
    run = sample_run(tmp_path / "run", cells)
    assert [r.to_dict() for r in run.cells] == [r.to_dict() for r in cells]
    assert run.meta["accel"] == "tcg" and run.created and "cells" not in run.meta
    assert run.cells[4].cell.stressors == ("bh-fill", "reclaim")  # tuples survive JSON lists
    assert run.release(run.cells[0]) == "6.1.0-26-amd64"


def test_release_falls_back_to_the_run_kernel_table(tmp_path):
    cells = cell_results(tmp_path / "run")
    cells[0].release = ""
    run = sample_run(tmp_path / "run", cells)
    assert run.release(run.cells[0]) == "6.1.0-26-amd64"


def test_load_a_directory_and_unknown_keys_from_a_newer_writer(tmp_path):
    run = sample_run(tmp_path / "run")
    doc = json.loads((tmp_path / "run" / "results.json").read_text())
    doc["cells"][0]["future_field"] = 1
    (tmp_path / "run" / "results.json").write_text(json.dumps(doc))
    again = results.load(tmp_path / "run")
    assert len(again.cells) == len(run.cells) and not hasattr(again.cells[0], "future_field")


@pytest.mark.parametrize("content, problem", [
    (None, "cannot read results"),
    ("{not json", "not JSON"),
    ('{"cells": []}', "not a pinharness results file"),
    ('{"pinharness": 99, "cells": []}', "results format 99"),
    ('{"pinharness": 1, "cells": [{"status": "EXPECTED"}]}', "cell #1 is malformed"),
])
def test_bad_results_are_one_line_errors(tmp_path, content, problem):
    path = tmp_path / "results.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(HarnessError) as exc:
        results.load(path)
    assert problem in str(exc.value) and "\n" not in str(exc.value) and ": " in str(exc.value)


def test_a_copied_results_directory_uses_its_own_artifacts(tmp_path):
    sample_run(tmp_path / "runner")
    shutil.copytree(tmp_path / "runner", tmp_path / "copy")
    run = results.load(tmp_path / "copy")
    assert all(Path(r.artifacts).parent == tmp_path / "copy" for r in run.cells)


def test_artifacts_follow_a_moved_results_directory(tmp_path):
    sample_run(tmp_path / "runner")
    shutil.move(tmp_path / "runner", tmp_path / "downloaded")  # the absolute paths inside are stale now
    run = results.load(tmp_path / "downloaded" / "results.json")
    for r in run.cells:
        assert Path(r.artifacts) == tmp_path / "downloaded" / r.cell.id
    assert results.report_text(run.cells[0]).startswith(f"TITLE: {WARN_TITLE}")


def _shards(tmp_path):
    whole = cell_results(tmp_path / "x")
    a = sample_run(tmp_path / "shards" / "a", cell_results(tmp_path / "shards" / "a")[:3])
    b = sample_run(tmp_path / "shards" / "b", cell_results(tmp_path / "shards" / "b")[3:], accel="kvm")
    return whole, a, b


def test_merge_shards_and_write_relative_paths(tmp_path):
    whole, a, b = _shards(tmp_path)
    merged = results.merge([a, b])
    assert [r.cell.id for r in merged.cells] == [r.cell.id for r in whole]
    assert merged.meta["accel"] == "kvm+tcg" and merged.meta["seconds"] == pytest.approx(581.0)
    results.write_run(merged, tmp_path / "report" / "results.json")
    doc = json.loads((tmp_path / "report" / "results.json").read_text())
    assert doc["cells"][0]["artifacts"] == "../shards/a/debian-6.1-odirect-ext4-reclaim"
    back = results.load(tmp_path / "report")
    assert results.report_text(back.cells[0]).startswith(f"TITLE: {WARN_TITLE}")


def test_find_and_load_many_search_directories(tmp_path):
    whole, _, _ = _shards(tmp_path)
    assert [p.parent.name for p in results.find([tmp_path / "shards"])] == ["a", "b"]
    assert len(results.load_many([tmp_path / "shards"]).cells) == len(whole)
    assert results.load_many([tmp_path / "shards" / "a"]).path == tmp_path / "shards" / "a" / "results.json"
    (tmp_path / "empty").mkdir()
    with pytest.raises(HarnessError, match="no results.json below"):
        results.find([tmp_path / "empty"])


def test_overlapping_shards_are_refused(tmp_path):
    _, a, _ = _shards(tmp_path)
    with pytest.raises(HarnessError, match="shards overlap"):
        results.merge([a, a])
    with pytest.raises(HarnessError, match="nothing to merge"):
        results.merge([])


def test_junit_one_testcase_per_cell_with_title_and_report(tmp_path):
    run = sample_run(tmp_path / "run")
    suite = ET.parse(results.write_junit(run.cells, tmp_path / "junit.xml")).getroot()
    cases = {tc.get("name"): tc for tc in suite.iter("testcase")}
    assert list(cases) == [r.cell.id for r in run.cells]
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == ("7", "3", "1", "1")
    assert cases["debian-6.1-odirect-ext4-reclaim"].find("failure") is None  # a known bug passes
    crash = cases["debian-6.12-io_uring-xfs-none"].find("failure")
    assert crash.get("message") == f"CRASH: {EVIL_TITLE}"
    assert "\x1b" not in crash.text and "kernel panic" in crash.text  # control characters cannot be in XML
    assert EVIL_TITLE in cases["debian-6.12-io_uring-xfs-none"].find("system-out").text
    error_out = cases["debian-6.1-io_uring-ext4-none"].find("system-out").text
    assert "login:" in error_out  # no report: the console's tail is attached
    assert cases["debian-6.12-vfio-ext4-bh-fill+reclaim"].find("skipped") is not None


def test_effective_status_and_headline(tmp_path):
    run = sample_run(tmp_path / "run")
    r = run.cells[2]
    assert results.effective_status(r) == "EXPECTED"
    r.ok = False  # e.g. fsck found problems after the verdict
    assert results.effective_status(r) == "UNEXPECTED"
    assert results.headline(run.cells[0]) == WARN_TITLE
    assert results.headline(run.cells[5]).startswith("BootTimeout")
