"""Stressors: the while-held steps (fsfreeze, punch-hole, truncate), their
quoting, how a run's data check and notes follow from them, and the C helper
that runs them inside the workload (built and run on the host)."""
import json
import subprocess

import pytest

from harness.vm.host import require_tool
from harness.pins.stressors import STRESSORS, Stressors, expand
from harness.pins.workloads import HERE, WorkloadRun


def test_while_held_steps_compose_in_order_and_quote_paths():
    s = Stressors(None, ["reclaim", "fsfreeze", "punch-hole"], "/mnt/my scratch")
    held = s.while_held
    assert held.index("fsfreeze -f '/mnt/my scratch'") < held.index("fallocate --punch-hole")
    assert "'/mnt/my scratch/pinned'" in held
    assert Stressors(None, ["reclaim", "bh-fill"]).while_held == ""
    assert expand("fsfreeze -u @MNT@", "/m", "/m/f") == "fsfreeze -u /m"


@pytest.mark.parametrize("name,keeps", [("fsfreeze", True), ("punch-hole", False), ("truncate", False),
                                        ("reclaim", True)])
def test_stressors_that_rewrite_the_range_turn_the_data_check_off(name, keeps):
    assert Stressors(None, [name]).keeps_data is keeps
    assert bool(STRESSORS[name].while_held) is (name != "reclaim")


def test_lost_pages_are_not_counted_without_a_data_check():
    run = WorkloadRun("vfio", "ext4", ("punch-hole",), {"device_wrote_B": 16}, {"B": 0}, "")
    assert run.lost_pages == 16
    run.data_check = False
    assert run.lost_pages == 0 and run.to_dict()["data_check"] is False


def test_notes_say_whether_the_workload_ran_the_steps():
    s = Stressors(None, ["truncate"])
    s.check_while_held({}, "gup_test")
    assert "not applied: workload gup_test has no moment with the pin held" in s.notes[0]
    s = Stressors(None, ["fsfreeze"])
    s.check_while_held({"while_held_status": 1}, "vfio")
    assert s.notes == ["fsfreeze: while-held steps failed (exit 1)"]
    s = Stressors(None, ["punch-hole"])
    s.check_while_held({"while_held_status": 0}, "vfio")
    assert s.notes[0] == "punch-hole: ran while the pin was held"
    assert "lost pages are not counted" in s.notes[1]


def test_the_c_helper_runs_the_steps_on_a_real_file(tmp_path):
    """ph_while_held() (common.h) runs PH_WHILE_HELD and reports its exit status;
    the punch-hole and truncate steps really zero the file (fallocate/truncate on tmp)."""
    gcc = require_tool("gcc")
    src = tmp_path / "held.c"
    src.write_text('#include "common.h"\nint main(void)\n{\n\tprintf("{\\"x\\": 1");\n\tph_while_held();\n'
                   '\tprintf("}\\n");\n\treturn 0;\n}\n')
    exe = tmp_path / "held"
    subprocess.run([gcc, "-O2", "-Wall", "-Werror", "-I", str(HERE), "-o", str(exe), str(src)], check=True,
                   timeout=120)
    f = tmp_path / "pinned"
    for name in ("punch-hole", "truncate"):
        f.write_bytes(b"A" * 8192)
        held = Stressors(None, [name], str(tmp_path), str(f)).while_held
        out = subprocess.run([str(exe)], env={"PH_WHILE_HELD": held, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
                             capture_output=True, text=True, timeout=60)
        assert json.loads(out.stdout) == {"x": 1, "while_held_status": 0}, out.stderr
        assert f.read_bytes() == b"\0" * 8192
    out = subprocess.run([str(exe)], env={"PH_WHILE_HELD": "exit 3"}, capture_output=True, text=True, timeout=60)
    assert json.loads(out.stdout)["while_held_status"] == 3
    assert json.loads(subprocess.run([str(exe)], env={}, capture_output=True, text=True,
                                     timeout=60).stdout) == {"x": 1}
