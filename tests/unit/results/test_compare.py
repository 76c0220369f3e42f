"""compare: NEW/FIXED/CHANGED/FLAKY/UNCHANGED/ADDED/REMOVED with planted changes, and the command."""
import json

import pytest

from harness.cli import parser as cli
from harness.results.compare import RULES, CHANGE_KINDS, classify, compare, facets
from results_samples import WARN_TITLE, cell_results, sample_run, with_changes

KNOWN = "debian-6.1-odirect-ext4-reclaim"  # WARNING + DATA-LOSS on 6.1
XFS = "debian-6.1-odirect-xfs-reclaim"  # DATA-LOSS(3) on 6.1
PROTECTED = "debian-6.12-odirect-ext4-reclaim"  # PROTECTED(EFAULT) on 6.12
CRASH = "debian-6.12-io_uring-xfs-none"
NO_ORACLE = "debian-6.12-io_uring-ext4-none"
NEW_612 = "6.12.10-amd64"


def _runs(tmp_path, **changes):
    old_cells = cell_results(tmp_path / "old")
    old = sample_run(tmp_path / "old", old_cells)
    new = sample_run(tmp_path / "new", with_changes(old_cells, tmp_path / "new", **changes))
    return old, new


def test_rules_are_documented_for_every_kind():
    assert set(RULES) == set(CHANGE_KINDS)


def test_identical_runs_are_unchanged(tmp_path):
    old, new = _runs(tmp_path)
    assert compare(old, new).counts == {k: (len(old.cells) if k == "UNCHANGED" else 0) for k in CHANGE_KINDS}


def test_planted_changes(tmp_path):
    old, new = _runs(tmp_path, **{
        # a kernel update brings a warning where the pin used to be refused cleanly: NEW
        PROTECTED: dict(release=NEW_612, pin_errno=0, outcome=f"WARNING({WARN_TITLE})", titles=[WARN_TITLE],
                        status="UNEXPECTED-ALLOW", ok=False),
        # a kernel update and the crash is gone: FIXED
        CRASH: dict(release=NEW_612, outcome="CLEAN", titles=[], status="EXPECTED", ok=True),
        # same 6.1 release, the data loss did not happen tonight: FLAKY, not FIXED
        XFS: dict(outcome="CLEAN", lost_pages=0, status="EXPECTED", ok=True),
        # same release, fewer pages lost: the same facets, UNCHANGED
        KNOWN: dict(outcome=f"WARNING({WARN_TITLE})+DATA-LOSS(9)", lost_pages=9),
        # only the oracle's verdict differs: CHANGED
        NO_ORACLE: dict(status="EXPECTED", ok=True),
    })
    cmp = compare(old, new)
    kinds = {c.cell_id: c.kind for c in cmp.changes}
    assert kinds[PROTECTED] == "NEW" and kinds[CRASH] == "FIXED" and kinds[XFS] == "FLAKY"
    assert kinds[KNOWN] == "UNCHANGED" and kinds[NO_ORACLE] == "CHANGED"
    new_change = cmp.of("NEW")[0]
    assert new_change.appeared == (f"WARNING: {WARN_TITLE}",) and new_change.old_release == "6.12.9-amd64"
    assert cmp.of("FIXED")[0].gone[0].startswith("CRASH: BUG: <script>")
    assert cmp.counts["NEW"] == 1 and cmp.counts["FLAKY"] == 1
    assert "NEW" in new_change.line() and "6.12.9-amd64 -> 6.12.10-amd64" in new_change.line()


def test_a_flaky_crash_is_not_new(tmp_path):
    crash = dict(outcome="CRASH(kernel BUG in folio_mark_dirty)", titles=["kernel BUG in folio_mark_dirty"],
                 status="CRASH", ok=False)
    _, new = _runs(tmp_path, **{PROTECTED: crash})
    old2, _ = _runs(tmp_path / "b")
    assert compare(old2, new).of("FLAKY")[0].cell_id == PROTECTED
    _, newer = _runs(tmp_path / "c", **{PROTECTED: dict(crash, release=NEW_612)})
    assert compare(old2, newer).of("NEW")[0].appeared == ("CRASH: kernel BUG in folio_mark_dirty",)


def test_errno_change_with_kernel_change_is_changed(tmp_path):
    old, new = _runs(tmp_path, **{PROTECTED: dict(release=NEW_612, pin_errno=95, outcome="PROTECTED(EOPNOTSUPP)")})
    c = {c.cell_id: c for c in compare(old, new).changes}[PROTECTED]
    assert c.kind == "CHANGED" and c.appeared == () and c.gone == ()


def test_added_and_removed(tmp_path):
    cells = cell_results(tmp_path / "old")
    old = sample_run(tmp_path / "old", cells[:-1])
    new = sample_run(tmp_path / "new", with_changes(cells[1:], tmp_path / "new"))
    cmp = compare(old, new)
    assert [c.cell_id for c in cmp.of("ADDED")] == [cells[-1].cell.id]
    assert [c.cell_id for c in cmp.of("REMOVED")] == [cells[0].cell.id]
    assert classify(None, cells[0]).kind == "ADDED"


def test_facets_ignore_page_counts(tmp_path):
    cells = cell_results(tmp_path)
    assert facets(cells[0]) == {f"WARNING: {WARN_TITLE}", "DATA-LOSS"}
    assert facets(cells[2]) == {"PROTECTED(EFAULT)"}
    assert facets(cells[4]) == {"SKIP"} and facets(cells[5]) == {"ERROR"}


def _cmd(capsys, *argv):
    code = cli.main(["compare", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_command_text_and_fail_on_new(tmp_path, capsys):
    old, new = _runs(tmp_path, **{PROTECTED: dict(release=NEW_612, pin_errno=0, outcome="DATA-LOSS(2)",
                                                  lost_pages=2, status="UNEXPECTED")})
    code, out, _ = _cmd(capsys, old.path, new.path)
    assert code == 0 and f"NEW       {PROTECTED}" in out and "summary: 1 new, 0 fixed" in out
    assert _cmd(capsys, old.path, new.path, "--fail-on-new")[0] == 1
    code, out, _ = _cmd(capsys, old.path.parent, new.path.parent, "--format", "json", "--all")
    doc = json.loads(out)
    assert code == 0 and doc["counts"]["NEW"] == 1 and len(doc["changes"]) == len(new.cells)


def test_command_flaky_does_not_fail(tmp_path, capsys):
    old, new = _runs(tmp_path, **{XFS: dict(outcome="CLEAN", lost_pages=0, status="EXPECTED", ok=True)})
    code, out, _ = _cmd(capsys, old.path, new.path, "--fail-on-new")
    assert code == 0 and f"FLAKY     {XFS}" in out


@pytest.mark.parametrize("content", ["", "[1, 2]"])
def test_command_bad_file_is_one_line(tmp_path, capsys, content):
    old, _ = _runs(tmp_path)
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    code, out, err = _cmd(capsys, old.path, bad)
    assert code == 2 and out == "" and err.count("\n") == 1 and "Traceback" not in err
