"""`python -m harness report`: JSON shape, text output, errors as one line with exit 2."""
import json
import subprocess
import sys
from pathlib import Path

from harness.cli import parser as cli

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "console"
WARN_LOG = GOLDEN / "syzbot-warning-ext4_dirty_folio.log"


def run(capsys, *argv):
    code = cli.main(["report", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_json_shape(capsys):
    code, out, err = run(capsys, "--format", "json", WARN_LOG)
    assert code == 0 and err == ""
    data = json.loads(out)
    (crash,) = data["crashes"]
    assert set(crash) == {"title", "alt_titles", "type", "subtype", "corrupted", "corrupted_reason", "guilty_file",
                          "frames", "report"}
    assert crash["subtype"] == ""  # syzbot has no finer type for a WARNING
    assert crash["title"] == "WARNING in ext4_dirty_folio"
    assert crash["frames"][0] == {"function": "ext4_dirty_folio", "offset": 0xf4, "file": "fs/ext4/inode.c",
                                  "line": 3600, "inlined": False}
    assert crash["report"].startswith("WARNING: CPU: 1 PID: 7386 at fs/ext4/inode.c:3600")


def test_json_no_crash(tmp_path, capsys):
    log = tmp_path / "boot.log"
    log.write_text("[    0.000000] Linux version 6.1.0-26-amd64\n[    1.0] login:\n")
    code, out, _ = run(capsys, "--format", "json", log)
    assert code == 0 and json.loads(out) == {"crashes": []}


def test_text_reads_like_a_syzbot_report(tmp_path, capsys):
    log = tmp_path / "console.log"
    log.write_text(WARN_LOG.read_text() * 2)
    code, out, _ = run(capsys, log)
    assert code == 0
    assert out.splitlines()[0] == "==== crash 1/1: WARNING in ext4_dirty_folio (seen 2 times)"
    assert "guilty file: fs/ext4/inode.c" in out
    assert " folio_mark_dirty+0xc1/0x140 mm/page-writeback.c:2632" in out


def test_text_no_crash(tmp_path, capsys):
    log = tmp_path / "empty.log"
    log.write_bytes(b"")
    assert run(capsys, log)[:2] == (0, "no crash found\n")


def test_missing_log_is_one_line_exit_2(tmp_path, capsys):
    code, out, err = run(capsys, tmp_path / "nope.log")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "does not exist" in err


def test_directory_is_one_line_exit_2(tmp_path, capsys):
    code, _, err = run(capsys, tmp_path)
    assert code == 2 and err.count("\n") == 1 and "directory" in err


def test_modules_without_vmlinux(capsys, tmp_path):
    code, _, err = run(capsys, "--modules", tmp_path, WARN_LOG)
    assert code == 2 and "--vmlinux" in err


def test_binary_garbage_log_from_stdin():
    proc = subprocess.run([sys.executable, "-m", "harness", "report", "--format", "json", "-"],
                          input=bytes(range(256)) * 50, capture_output=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[3])
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"crashes": []}


def test_oom_kills_are_listed_as_events(capsys):
    log = GOLDEN / "oom-kill-global-and-memcg.log"
    code, out, _ = run(capsys, "--format", "json", log)
    crashes = json.loads(out)["crashes"]
    assert code == 0 and [(c["title"], c["type"]) for c in crashes] == [
        ("OOM kill: hog", "OOM"), ("OOM kill: memhog", "OOM")]
    code, out, _ = run(capsys, log)
    assert "==== crash 1/2: OOM kill: hog" in out and "type: OOM" in out
    assert "Out of memory: Killed process 412 (hog)" in out


def test_text_and_json_show_syzbots_subtype(capsys):
    log = GOLDEN / "kasan-old-null-ptr-deref-on-address.log"
    code, out, _ = run(capsys, "--format", "json", log)
    (crash,) = json.loads(out)["crashes"]
    assert code == 0 and crash["subtype"] == "KASAN-NULL-PTR-DEREF-READ"
    code, out, _ = run(capsys, log)
    assert "type: KASAN (KASAN-NULL-PTR-DEREF-READ)" in out
