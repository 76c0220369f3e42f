"""Confirmed cells (three runs each) in every output: results.json, JUnit, KTAP, kcidb, HTML,
Markdown, the terminal table and the night-to-night comparison."""
import json
import shutil
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

from harness.results import model as results
from harness.results.compare import classify, compare, facets
from harness.results.kcidb import render as render_kcidb
from harness.results.ktap import render as render_ktap
from harness.results.markdown import render_markdown
from harness.results.summary import build, write_html
from results_samples import cell_results, confirmed_results, sample_run

REPRODUCED, FLAKY, KNOWN = (f"debian-6.12-kvm-xfs-bh-fill+reclaim", "debian-6.12-kvm-ext4-bh-fill+reclaim",
                            "debian-6.1-vfio-ext4-bh-fill+reclaim")


def _run(tmp_path, name="run"):
    d = tmp_path / name
    return sample_run(d, cell_results(d) + confirmed_results(d))


def test_every_run_is_kept_and_read_back(tmp_path):
    run = _run(tmp_path)
    cells = {r.cell.id: r for r in run.cells}
    flaky = cells[FLAKY]
    assert (flaky.status, flaky.runs, flaky.reproduced) == ("FLAKY", 3, 1)
    assert [a.outcome for a in flaky.attempts] == ["PIN-LEAK(1)", "CLEAN", "CLEAN"]
    assert [Path(a.artifacts).relative_to(tmp_path / "run").as_posix() for a in flaky.attempts] == [
        FLAKY, f"attempt-2/{FLAKY}", f"attempt-3/{FLAKY}"]
    doc = json.loads((tmp_path / "run" / "results.json").read_text())
    attempt = {c["cell"]["id"]: c for c in doc["cells"]}[FLAKY]["attempts"][1]
    assert "cell" not in attempt and attempt["status"] == "EXPECTED"
    # a copied results directory finds the re-runs' own logs too
    shutil.copytree(tmp_path / "run", tmp_path / "copy")
    shutil.rmtree(tmp_path / "run")
    moved = {r.cell.id: r for r in results.load(tmp_path / "copy").cells}[FLAKY]
    assert all(Path(a.artifacts).is_dir() and str(tmp_path / "copy") in a.artifacts for a in moved.attempts)


def test_results_without_confirmation_read_as_one_run(tmp_path):
    sample_run(tmp_path / "old")
    doc = json.loads((tmp_path / "old" / "results.json").read_text())
    for c in doc["cells"]:  # as written before confirmation existed
        for key in ("runs", "reproduced", "attempts"):
            del c[key]
    (tmp_path / "old" / "results.json").write_text(json.dumps(doc))
    run = results.load(tmp_path / "old")
    assert all((r.runs, r.reproduced, r.attempts) == (1, 1, []) for r in run.cells)
    assert [results.verdict_text(r) for r in run.cells][:3] == ["KNOWN-BUG", "UNEXPECTED", "EXPECTED"]


def test_merge_writes_relative_paths_for_every_run(tmp_path):
    run = _run(tmp_path)
    path = results.write_run(run, tmp_path / "run" / "merged.json")
    doc = {c["cell"]["id"]: c for c in json.loads(path.read_text())["cells"]}
    assert [a["artifacts"] for a in doc[FLAKY]["attempts"]] == [FLAKY, f"attempt-2/{FLAKY}", f"attempt-3/{FLAKY}"]


def test_junit_flaky_passes_with_surefire_rerun_elements(tmp_path):
    run = _run(tmp_path)
    suite = ET.parse(results.write_junit(run.cells, tmp_path / "junit.xml")).getroot()
    cases = {tc.get("name"): tc for tc in suite.iter("testcase")}
    flaky = cases[FLAKY]
    assert flaky.find("failure") is None and len(flaky.findall("flakyFailure")) == 1
    assert flaky.find("flakyFailure").get("type") == "UNEXPECTED"
    assert "verdict: FLAKY (1/3)" in flaky.find("system-out").text
    repro = cases[REPRODUCED]
    assert repro.find("failure").get("message").startswith("UNEXPECTED (reproduced 3/3): PIN-LEAK(1)")
    assert len(repro.findall("rerunFailure")) == 2
    assert cases[KNOWN].find("failure") is None and "KNOWN-BUG (reproduced 2/3)" in cases[KNOWN].find("system-out").text
    assert suite.get("failures") == "4"  # the three of cell_results, plus the reproduced surprise


def test_ktap_kcidb_html_markdown_show_the_rate(tmp_path):
    run = _run(tmp_path)
    ktap = render_ktap(run).splitlines()
    flaky_at = next(i for i, line in enumerate(ktap) if line.startswith(f"# {FLAKY}:"))
    assert ktap[flaky_at].endswith("verdict FLAKY (1/3)")
    assert "# run 2: CLEAN [EXPECTED]" in ktap[flaky_at:]
    assert any(line.startswith("ok ") and line.endswith(FLAKY) for line in ktap)
    assert any(line.startswith("not ok ") and line.endswith(REPRODUCED) for line in ktap)
    tests = {t["id"].rsplit(":", 1)[1]: t for t in render_kcidb(run)["tests"]}
    assert (tests[FLAKY]["status"], tests[FLAKY]["misc"]["verdict_text"]) == ("DONE", "FLAKY (1/3)")
    assert tests[REPRODUCED]["status"] == "FAIL" and tests[REPRODUCED]["misc"]["runs"] == 3
    page = write_html(run, tmp_path / "run" / "summary.html").read_text()
    assert "UNEXPECTED (reproduced 3/3)" in page and "FLAKY (1/3)" in page
    flaky_section = page[page.index("<h2>Flaky"):page.index("<h2>Since last run")]
    assert FLAKY in flaky_section and KNOWN in flaky_section and REPRODUCED not in flaky_section
    md = render_markdown(build(run))
    assert "**FLAKY (1/3)**" in md and "### Flaky: not reproduced on every run" in md
    assert "runs: PIN-LEAK(1), CLEAN, CLEAN" in md


def test_pages_without_reruns_say_so(tmp_path):
    run = sample_run(tmp_path / "run")
    assert "<p>No cell was re-run.</p>" in write_html(run, tmp_path / "run" / "s.html").read_text()
    assert "### Flaky" not in render_markdown(build(run))


def test_flaky_is_compared_night_to_night_but_never_new(tmp_path):
    old = {r.cell.id: r for r in _run(tmp_path, "old").cells}
    new_release = "6.12.10-amd64"
    clean = replace(old[FLAKY], status="EXPECTED", ok=True, outcome="CLEAN", kind="CLEAN", runs=1, reproduced=1,
                    attempts=[])
    # tonight's surprise did not reproduce, even though the kernel changed: FLAKY, not NEW
    c = classify(clean, old[FLAKY], "6.12.9-amd64", new_release)
    assert c.kind == "FLAKY" and c.appeared == ()
    # last night's flaky problem seen again and reproduced on a new kernel: NEW
    reproduced = replace(old[FLAKY], status="UNEXPECTED", ok=False, reproduced=3)
    assert classify(old[FLAKY], reproduced, "6.12.9-amd64", new_release).kind == "NEW"
    assert classify(old[FLAKY], old[FLAKY], "6.12.9-amd64", "6.12.9-amd64").kind == "UNCHANGED"
    assert "FLAKY PIN-LEAK" in facets(old[FLAKY])
    run = _run(tmp_path, "again")
    assert compare(run, run).counts["UNCHANGED"] == len(run.cells)


def test_terminal_table_short_titles_rate_and_legend(tmp_path):
    run = _run(tmp_path)
    text = results.table(run.cells)
    lines = text.splitlines()
    assert lines[0].split() == ["workload", "fs", "stressors", "outcome", "lost", "verdict"]
    assert any(line.startswith("6.1.0-26-amd64") for line in lines)  # a heading per kernel
    row = next(line for line in lines if line.startswith("  odirect   ext4"))
    assert "WARNING(ext4_dirty_folio)+DATA-LOSS(16)" in row and "WARNING in" not in row
    assert "  ext4_dirty_folio: WARNING in ext4_dirty_folio" in lines
    assert any(line.rstrip().endswith("UNEXPECTED 3/3 !") for line in lines)
    assert any(line.rstrip().endswith("FLAKY 1/3") for line in lines)
    assert any(line.startswith("n/m after a verdict") for line in lines)
    assert f"  {FLAKY}: FLAKY (1/3), first run PIN-LEAK(1)" in text
    table_rows = lines[:lines.index("")]
    assert max(len(line) for line in table_rows) <= results.TABLE_WIDTH_MAX


def test_terminal_outcome_keeps_first_and_last_part_when_too_long():
    from harness.pins.matrix import Cell, CellResult
    titles = ("WARNING in ext4_dirty_folio",
              "EXT4-fs warning in mpage_prepare_extent_to_map: page does not have buffers attached")
    r = CellResult(Cell("debian:6.1", "odirect", "ext4", ("reclaim",)), status="KNOWN-BUG", titles=titles,
                   outcome=f"WARNING({titles[0]})+WARNING({titles[1]})+DATA-LOSS(16)")
    assert results.terminal_outcome(r) == "WARNING(ext4_dirty_folio)+…+DATA-LOSS(16)"
    assert results.short_title(titles[1]) == "mpage_prepare_extent_to_map"


def test_short_titles():
    assert results.short_title("WARNING in ext4_dirty_folio") == "ext4_dirty_folio"
    assert results.short_title("KASAN: use-after-free Read in xfs_buf_rele") == "xfs_buf_rele"
    assert results.short_title("kernel BUG in ext4_writepages") == "ext4_writepages"
    long = "BUG: unable to handle page fault for address: ffff8880deadbeef"
    assert results.short_title(long) == long[:results.SHORT_TITLE_MAX - 1] + "…"
    assert results.short_title("kernel panic") == "kernel panic"


def test_junit_errors_rerun_as_errors(tmp_path):
    run = _run(tmp_path)
    flaky = next(r for r in run.cells if r.cell.id == FLAKY)
    flaky.attempts[0] = replace(flaky.attempts[0], status="ERROR", ok=False, outcome="", detail="BootTimeout: 300 s")
    err = replace(flaky, status="ERROR", ok=False, reproduced=3,
                  attempts=[replace(a, status="ERROR", ok=False) for a in flaky.attempts])
    suite = ET.parse(results.write_junit([flaky, err], tmp_path / "junit.xml")).getroot()
    first, second = suite.iter("testcase")
    assert [e.tag for e in first if e.tag != "system-out"] == ["flakyError"]
    assert [e.tag for e in second if e.tag != "system-out"] == ["error", "rerunError", "rerunError"]
