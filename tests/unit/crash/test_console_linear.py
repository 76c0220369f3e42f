"""Parsing is linear on any input: every regex on 1 MB lines, bounded reports, long caller-prefixed logs."""
import json
import subprocess
import sys
from pathlib import Path

from harness.crash import oopses
from harness.crash.console import guilty_file, parse, sanitize_title

import linear_sweep

SWEEP = Path(linear_sweep.__file__)
HEX = "0123456789abcdef" * 65_536  # 1 MB of hex digits (a syz program's blob)


def test_every_regex_returns_on_1_mb_lines_of_its_worst_characters():
    # A super-linear regex makes the child run for hours; the timeout only detects such a hang.
    run = subprocess.run([sys.executable, str(SWEEP)], capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-2000:]
    results = [json.loads(line) for line in run.stdout.splitlines()]
    expected = {(p, kind) for p in linear_sweep.patterns() for kind in linear_sweep.lines(p)}
    assert {(r["pattern"], r["kind"]) for r in results} == expected
    for r in results:
        assert r["span"] is None or 0 <= r["span"][0] <= r["span"][1] <= linear_sweep.MB


def test_the_file_name_regex_is_found_after_a_long_run():
    # It was cubic in the length of a run of file-name characters (2,000 characters took 2.8 s).
    assert oopses.rx(oopses.FILENAME).search("a/b_c-d.e" * 100_000) is None
    m = oopses.rx(oopses.FILENAME).search("x" * 1_000_000 + " fs/ext4/inode.c:3606")
    assert m is not None and m.group(1) == "fs/ext4/inode.c"
    m = oopses.rx(oopses.FILENAME).search("./" + "a/b_c-d.e" * 1000 + "/inode.c:1")
    assert m is not None and m.group(1).endswith("a/b_c-d.e/inode.c") and m.start() == 0


def test_title_gaps_stay_correct():
    warn = oopses.rx(r"WARNING: .*lib/debugobjects\.c.* (?:debug_print|debug_check|at)")
    assert warn.search("WARNING: CPU: 1 PID: 9 at lib/debugobjects.c:502 debug_print_object+0x16e/0x250")
    assert warn.search("WARNING: " * 100_000 + "lib/debugobjects.c" * 10_000) is None
    assert sanitize_title("WARNING in " + "g" * 100_000 + "+0x1/0x2") == "WARNING in " + "g" * 109


def test_a_1_mb_hex_line_inside_a_report():
    log = ("WARNING: CPU: 0 PID: 1 at fs/ext4/inode.c:3606 ext4_dirty_folio+0x5d/0x70\n"
           "RIP: 0010:ext4_dirty_folio+0x5d/0x70\nCall Trace:\n folio_mark_dirty+0xc1/0x140\n"
           f"{HEX}\n{'./' + 'a/b.c' * 200_000}\n ---[ end trace 0000000000000000 ]---\n")
    [rep] = parse(log)
    assert rep.title == "WARNING in ext4_dirty_folio"
    assert rep.guilty_file == "fs/ext4/inode.c"
    assert max(len(line) for line in rep.report.splitlines()) <= oopses.MAX_LINE_CHARS
    assert guilty_file(HEX + "\n fs/xfs/xfs_buf.c:12\n") == "fs/xfs/xfs_buf.c"


def test_other_callers_lines_count_toward_the_report_bound():
    head = "[   10.000000][  T100] WARNING: CPU: 0 PID: 100 at fs/ext4/inode.c:3606 ext4_dirty_folio+0x5d/0x70\n"
    noise = "".join(f"[   10.000001][  T{200 + i % 7}] fio: {HEX[:200]}\n" for i in range(oopses.MAX_SCAN_LINES + 10))
    late = "[   11.000000][  T100]  late_frame+0x1/0x2\n"
    text = head + "[   10.000000][  T100] Call Trace:\n[   10.000000][  T100]  f+0x1/0x2\n" + noise + late
    [rep] = parse(text)
    assert "late_frame" not in rep.report
    assert rep.report.count("\n") == 3


def test_a_log_of_headers_is_parsed_once_per_line():
    line = "BUG: " * 200_000  # one line full of markers
    reps = parse(line + "\n" + line)
    assert len(reps) == 2 and all(r.title for r in reps)


def test_every_marker_holds_an_anchor():
    # Lines are only looked at when they hold an anchor: a marker without one would never be found.
    assert all(any(a in o.marker for a in oopses.MARKER_ANCHORS) for o in oopses.OOPSES)


def test_marker_lines_finds_anchors_across_chunk_edges_and_outside_the_sample():
    from harness.crash.console import _marker_lines

    chunk = oopses.MARKER_CHUNK
    warn = "WARNING: CPU: 0 PID: 1 at fs/ext4/inode.c:3606 ext4_dirty_folio+0x5d/0x70\n"
    for cut in (1, 3, len("WARNING:") - 1):  # the anchor straddles the end of the first chunk
        pad = "x" * (chunk - cut - 1) + "\n"
        text = pad + warn + "y" * (3 * chunk) + "\n"
        assert _marker_lines(text) == [(len(pad), len(pad))]
    # 'W' never occurs in the sampled slices, only in one line between them
    step = 8 * chunk
    text = ("a" * (step - 1) + "\n") * 4 + warn + ("a" * (step - 1) + "\n") * 12
    [(start, at)] = _marker_lines(text)
    assert text[start:].startswith("WARNING:") and at == start
    [rep] = parse(text)
    assert rep.type == "WARNING" and rep.start == start
