"""mkclean_race: its specs, arguments, oracle rows, and the program itself on the host: a short run
records each page's last number next to the program, and mode=verify tells current pages from stale,
torn and zeroed ones, which WorkloadRun turns into lost pages."""
import json
import os
import shutil
import subprocess
import struct

import pytest

from harness.errors import HarnessError
from harness.pins import oracle
from harness.pins.matrix import cells
from harness.pins.workloads import (CGROUP, DEFAULT_WORKLOADS, HERE, PAGE, WORKLOADS, WorkloadRun, _raise_if_gave_up,
                                    build, workload_args, workload_vm_options)
from harness.vm.host import Paths

NAMES = ("mkclean_race", "mkclean_race_thp")
SEQ_OFF, SEQ_END = 16, PAGE - 8  # where the writers store a page's number (mkclean_race.c)
INITIAL = int.from_bytes(b"A" * 8, "little")  # pattern A's bytes there: not written yet


def test_specs_need_two_cpus_and_no_device():
    for name in NAMES:
        spec = WORKLOADS[name]
        assert spec.source == "mkclean_race.c" and spec.check == "record"
        assert spec.vm == {"cpus": 2} and not spec.source_disk and not spec.prepare and spec.static
        assert "MEMCG" not in spec.kconfig and spec.default_stressors == ("none",)
    assert WORKLOADS["mkclean_race"].kconfig == () and WORKLOADS["mkclean_race_thp"].kconfig == ("TRANSPARENT_HUGEPAGE",)
    # the THP variant runs only when named: the default matrix gains one cell per kernel and fs
    assert "mkclean_race" in DEFAULT_WORKLOADS and "mkclean_race_thp" not in DEFAULT_WORKLOADS
    assert [c.id for c in cells(["debian:6.1"], DEFAULT_WORKLOADS, ["ext4", "xfs"]) if "mkclean" in c.id] == [
        "debian-6.1-mkclean_race-ext4-none", "debian-6.1-mkclean_race-xfs-none"]


def test_arguments_and_vm_options():
    base = ["file=/mnt/scratch/pinned", "pages=16", f"cgroup={CGROUP}", "reclaim=0", "seconds=4", "writers=2"]
    assert workload_args(WORKLOADS["mkclean_race"], "/mnt/scratch/pinned", 16, ("none",), []) == base
    assert workload_args(WORKLOADS["mkclean_race_thp"], "/mnt/scratch/pinned", 16, ("none",), []) == base + ["thp=1"]
    assert workload_args(WORKLOADS["mkclean_race"], "/f", 16, ("reclaim",), [])[3] == "reclaim=1"
    assert workload_vm_options(WORKLOADS["mkclean_race"], ("none",)) == {"cpus": 2}
    assert workload_vm_options(WORKLOADS["mkclean_race"], ("bh-fill",)) == {"cpus": 2, "memory_mb": 512}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("version", [(6, 1, 192), (6, 12, 117), (7, 2, 13)])
@pytest.mark.parametrize("fs", ["ext4", "xfs"])
def test_oracle_expects_clean_everywhere(name, version, fs):
    exp = oracle.expectation(version, name, fs, ("none",))
    assert exp is not None and exp.expect == "CLEAN" and not exp.bug and "TLB" in exp.why


def _run(verify: dict, written: int = 16) -> WorkloadRun:
    result = {"workload": "mkclean_race", "pages": 16, "pin": {"errno": 0, "taken": False},
              "device_wrote_B": written, "setup_errno": 0}
    return WorkloadRun("mkclean_race", "ext4", ("none",), result, verify, "", pins={})


def test_an_older_number_on_disk_is_data_loss_against_the_clean_row():
    exp = oracle.expectation((6, 1, 192), "mkclean_race", "ext4", ("none",))
    clean = oracle.classify(_run({"pages": 16, "B": 16, "stale": 0}), [])
    assert str(clean) == "CLEAN" and oracle.verdict(clean, exp).status == "EXPECTED"
    lost = oracle.classify(_run({"pages": 16, "B": 14, "stale": 1, "regressed": 1}), [])
    assert (lost.kind, lost.lost_pages, lost.pin_errno) == ("DATA-LOSS", 2, 0)
    v = oracle.verdict(lost, exp)
    assert not v.ok and v.status == "UNEXPECTED" and "DATA-LOSS(2)" in v.detail


def _two_cpus() -> bool:
    return {0, 1} <= os.sched_getaffinity(0)


def _page(data: bytes, i: int) -> tuple[int, int]:
    p = data[i * PAGE:(i + 1) * PAGE]
    assert p[:9] == b"PINHARNSA" and int.from_bytes(p[9:16], "little") == i
    return struct.unpack_from("<Q", p, SEQ_OFF)[0], struct.unpack_from("<Q", p, SEQ_END)[0]


def _verify(binary, f, *extra) -> dict:
    out = subprocess.run([str(binary), "mode=verify", f"file={f}", "pages=16", *extra], capture_output=True,
                         text=True, timeout=60)
    return json.loads(out.stdout)


@pytest.mark.skipif(not _two_cpus(), reason="the writers run on CPU 0 and the cleaner on CPU 1")
def test_run_records_last_numbers_and_verify_finds_stale_torn_and_zero_pages(tmp_path):
    binary = build("mkclean_race", Paths(tmp_path / "cache"))
    f = tmp_path / "pinned"
    proc = subprocess.run([str(binary), f"file={f}", "pages=8", "seconds=0.5", "writers=2"], capture_output=True,
                          text=True, timeout=60)
    doc = json.loads(proc.stdout)
    assert doc["pages"] == 8 and doc["device_wrote_B"] == 8 and doc["pin"] == {"errno": 0, "strerror": "",
                                                                                 "taken": False}
    assert doc["setup_errno"] == 0 and doc["writer_cpus"] == [0, 0] and doc["cleaner_cpu"] == 1
    assert doc["clean_cycles"] > 0 and doc["writes"] >= 8 and doc["memory_mismatch"] == 0
    assert doc["memory_regressions"] == 0 and doc["fsync_ret"] == 0 and doc["msync_errno"] == 0
    assert doc["record"] == f"{binary}.last"  # beside the program: not on the file system under test
    lines = (binary.parent / f"{binary.name}.last").read_text().splitlines()
    assert lines[0] == f"mkclean_race pages=8 file={f}" and len(lines) == 9
    last = [int(line.split()[0]) for line in lines[1:]]
    data = f.read_bytes()
    assert [_page(data, i) for i in range(8)] == [(n, n) for n in last] and all(last)

    verify = _verify(binary, f)
    assert (verify["pages"], verify["B"], verify["stale"], verify["A"], verify["other"]) == (8, 8, 0, 0, 0)
    assert _run(verify, doc["device_wrote_B"]).lost_pages == 0
    # what a lost store leaves on disk: an older number, pattern A's bytes, a torn page, a zeroed page
    with open(f, "r+b") as fh:
        for i, (v1, v2) in {1: (last[1] - 1, last[1] - 1), 2: (INITIAL, INITIAL), 3: (last[3], last[3] - 1)}.items():
            fh.seek(i * PAGE + SEQ_OFF)
            fh.write(struct.pack("<Q", v1))
            fh.seek(i * PAGE + SEQ_END)
            fh.write(struct.pack("<Q", v2))
        fh.seek(5 * PAGE)
        fh.write(bytes(PAGE))
    verify = _verify(binary, f)
    assert {k: verify[k] for k in ("B", "stale", "A", "other", "zero", "misplaced")} == dict(
        B=4, stale=1, A=1, other=1, zero=1, misplaced=0)
    assert verify["max_lag"] == 1 and _run(verify, 8).lost_pages == 4


def test_verify_without_its_record_gives_up_with_one_line(tmp_path):
    binary = build("mkclean_race", Paths(tmp_path / "cache"))
    f = tmp_path / "pinned"
    f.write_bytes(bytes(PAGE))
    doc = _verify(binary, f)
    assert doc["error"].startswith("open the record")
    with pytest.raises(HarnessError, match=r"^verify of mkclean_race failed at open the record .*\(errno 2\)$"):
        _raise_if_gave_up(doc, "verify of mkclean_race")
    record = tmp_path / "rec"
    record.write_text(f"mkclean_race pages=1 file={tmp_path / 'other'}\n5 0\n")
    assert _verify(binary, f, f"record={record}")["error"] == "the record is of another file"


@pytest.mark.skipif(not shutil.which("aarch64-linux-gnu-gcc"), reason="no aarch64 cross compiler")
def test_the_program_cross_compiles_for_arm64(tmp_path):
    out = tmp_path / "mkclean_race-arm64"
    proc = subprocess.run(["aarch64-linux-gnu-gcc", "-O2", "-Wall", "-Werror", "-pthread", "-static", "-o", str(out),
                           str(HERE / "mkclean_race.c")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    header = subprocess.run(["readelf", "-h", str(out)], capture_output=True, text=True, timeout=60).stdout
    assert "AArch64" in header
