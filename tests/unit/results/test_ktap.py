"""KTAP version 1: plan, one numbered result per cell, SKIP/XFAIL directives, diagnostics."""
import re

from harness.results.ktap import KTAP_STATUS, render, write_ktap
from harness.results.model import JUNIT_STATUS
from results_samples import WARN_TITLE, sample_run

RESULT = re.compile(r"^(ok|not ok) (\d+) ([^#]+?)(?: # (SKIP|XFAIL)(?: (.*))?)?$")


def test_every_status_has_a_ktap_mapping():
    assert set(JUNIT_STATUS) <= set(KTAP_STATUS)


def test_shape(tmp_path):
    run = sample_run(tmp_path / "run")
    text = write_ktap(run, tmp_path / "results.ktap").read_text()
    lines = text.splitlines()
    assert lines[:2] == ["KTAP version 1", f"1..{len(run.cells)}"]
    results = [RESULT.match(line) for line in lines if line.startswith(("ok ", "not ok "))]
    assert all(results) and [int(m.group(2)) for m in results] == list(range(1, len(run.cells) + 1))
    assert [m.group(3) for m in results] == [r.cell.id for r in run.cells]
    assert all(line.startswith(("KTAP", "1..", "ok ", "not ok ", "# ")) for line in lines)
    by_id = {m.group(3): m for m in results}
    assert by_id["debian-6.1-odirect-ext4-reclaim"].group(1, 4) == ("ok", "XFAIL")
    assert by_id["debian-6.12-odirect-ext4-reclaim"].group(1, 4) == ("ok", None)
    skip = by_id["debian-6.12-vfio-ext4-bh-fill+reclaim"]
    assert skip.group(1, 4, 5) == ("ok", "SKIP", "debian-6.12 lacks CONFIG_VFIO_PCI")
    for failed in ("debian-6.1-odirect-xfs-reclaim", "debian-6.12-io_uring-xfs-none", "debian-6.1-io_uring-ext4-none",
                   "debian-6.12-io_uring-ext4-none"):
        assert by_id[failed].group(1) == "not ok"


def test_diagnostics_carry_outcome_and_titles_before_the_result(tmp_path):
    run = sample_run(tmp_path / "run")
    lines = render(run).splitlines()
    i = lines.index("not ok 2 debian-6.1-odirect-xfs-reclaim")
    block = lines[lines.index("ok 1 debian-6.1-odirect-ext4-reclaim # XFAIL "
                              "WARNING(WARNING in ext4_dirty_folio)+DATA-LOSS(16)") + 1:i]
    assert "# outcome: DATA-LOSS(3)" in block and "# expected: CLEAN" in block
    assert f"# title: {WARN_TITLE}" in lines
    evil = [line for line in lines if line.startswith("# title: BUG")]
    assert evil and "#" not in evil[0][1:] and evil[0].endswith("No.1")  # a '#' in a title cannot start a directive


def test_a_passing_status_with_ok_false_is_not_ok(tmp_path):
    run = sample_run(tmp_path / "run")
    run.cells[2].ok = False
    assert "not ok 3 debian-6.12-odirect-ext4-reclaim" in render(run)
