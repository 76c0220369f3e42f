"""Workload sources build with the host gcc; the pattern layout matches the C side."""
import json
import subprocess

import pytest

from harness.vm.host import Paths
from harness.pins.matrix import cells
from harness.errors import HarnessError
from harness.pins.stressors import parse
from harness.pins.workloads import WORKLOADS, _pattern_page, build, make_source_disk


@pytest.mark.parametrize("name", sorted(WORKLOADS))
def test_workload_builds_static_and_verifies_patterns(name, tmp_path):
    binary = build(name, Paths(tmp_path / "cache"))
    interp = subprocess.run(["readelf", "-l", str(binary)], capture_output=True, text=True).stdout
    assert ("Requesting program interpreter" not in interp) == WORKLOADS[name].static
    if WORKLOADS[name].check == "record":  # compares with its run's record: test_mkclean_race.py
        return
    # The C verifier classifies the pages Python wrote: the two sides agree on the layout.
    f = tmp_path / "data"
    f.write_bytes(_pattern_page(b"A", 0) + _pattern_page(b"B", 1) + b"\0" * 4096 + _pattern_page(b"B", 7))
    out = subprocess.run([str(binary), "mode=verify", f"file={f}", "pages=4"], capture_output=True, text=True,
                         timeout=60)
    doc = json.loads(out.stdout)
    if WORKLOADS[name].partial_pages:  # only the device's region counts: no zero pages, no page index check
        assert (doc["A"], doc["B"], doc["other"], doc["misplaced"]) == (1, 2, 1, 0)
    else:
        assert (doc["A"], doc["B"], doc["zero"], doc["misplaced"]) == (1, 2, 1, 1)


def test_source_disk_holds_pattern_b(tmp_path):
    img = make_source_disk(tmp_path, 4, extra_pages=2)
    data = img.read_bytes()
    assert len(data) == 6 * 4096
    assert data[4096 * 3:4096 * 4] == _pattern_page(b"B", 3)


def test_cells_cross_product_and_bad_names():
    cs = cells(["debian:6.1", "debian:6.12"], ["odirect", "io_uring"], ["ext4", "xfs"])
    assert len(cs) == 8 and cs[0].id == "debian-6.1-odirect-ext4-reclaim"
    assert parse("mglru-off+bh-fill") == ("mglru-off", "bh-fill")
    with pytest.raises(HarnessError, match="unknown stressor 'bogus'"):
        parse("reclaim+bogus")
    with pytest.raises(HarnessError, match="unknown workload 'nope'"):
        cells(["debian:6.1"], ["nope"], ["ext4"])


def test_pin_counters_are_read_until_they_settle(tmp_path):
    """read_pins' guest command, run by the host's bash: it returns both counters, and with a
    settle time it waits for acquired == released (here they match at once on the host)."""
    import subprocess
    from types import SimpleNamespace

    from harness.pins.workloads import read_pins

    class LocalVM:
        def run(self, command, timeout):
            out = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=timeout)
            return SimpleNamespace(stdout=out.stdout)

    with open("/proc/vmstat") as f:
        if "nr_foll_pin_acquired" not in f.read():
            import pytest
            pytest.skip("this kernel has no nr_foll_pin_* counters")
    got = read_pins(LocalVM(), settle=1.0)
    assert set(got) == {"nr_foll_pin_acquired", "nr_foll_pin_released"}
    assert all(isinstance(v, int) for v in got.values())
