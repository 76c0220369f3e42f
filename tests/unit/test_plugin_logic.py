"""The pytest plugin's own logic, without booting anything: --require-vm, markers,
collection of the whole suite."""
import subprocess
import sys
from pathlib import Path

from harness.vm.guest import SSHKey
from harness.vm.vm import VMOptions, disk_by_serial_shell, kernel_cmdline

ROOT = Path(__file__).resolve().parents[2]


def test_require_vm_fails_a_run_whose_vm_tests_skipped(pytester):
    pytester.makepyfile(test_x='''
import pytest

@pytest.mark.vm
def test_needs_a_guest():
    pytest.skip("no guest here")

def test_plain():
    assert True
''')
    result = pytester.runpytest("-p", "harness.pytest_plugin", "--require-vm")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*--require-vm: 0 VM tests ran, 1 skipped*the run fails*"])


def test_require_vm_fails_a_run_without_vm_tests(pytester):
    pytester.makepyfile(test_x="def test_plain():\n    assert True\n")
    assert pytester.runpytest("-p", "harness.pytest_plugin", "--require-vm").ret == 1
    assert pytester.runpytest("-p", "harness.pytest_plugin").ret == 0


def test_require_vm_counts_xfailed_vm_tests_as_ran(pytester):
    pytester.makepyfile(test_x='''
import pytest

@pytest.mark.vm
@pytest.mark.xfail(strict=True, raises=AssertionError, reason="known kernel bug")
def test_known_bug():
    raise AssertionError("the bug showed")

@pytest.mark.vm
def test_ran():
    assert True
''')
    result = pytester.runpytest("-p", "harness.pytest_plugin", "--require-vm")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*--require-vm: 2 VM tests ran, none skipped*"])


def test_require_vm_passes_when_vm_tests_ran(pytester):
    pytester.makepyfile(test_x="import pytest\n\n@pytest.mark.vm\ndef test_ran():\n    assert True\n")
    result = pytester.runpytest("-p", "harness.pytest_plugin", "--require-vm")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*--require-vm: 1 VM tests ran, none skipped*"])


def test_unknown_workload_marker_is_a_usage_error(pytester):
    pytester.makepyfile(test_x='''
import pytest

@pytest.mark.workload("nonesuch")
def test_w(vm):
    pass
''')
    result = pytester.runpytest("-p", "harness.pytest_plugin", "--kernel", "/nonexistent")
    assert result.ret == 4  # usage error, before any fixture runs
    assert "unknown workload 'nonesuch'" in result.stdout.str() + result.stderr.str()


def test_whole_suite_collects():
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "tests"], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "tests/vm/test_matrix.py::test_cell[debian-6.1-odirect-ext4-reclaim]" in out.stdout


def test_kernel_cmdline_carries_key_disks_and_options():
    key = SSHKey.generate()
    words = kernel_cmdline(VMOptions(iommu=True, cmdline=("foo=1",)), key, modules=True)
    assert "console=ttyS0,115200" in words and "panic=-1" in words and "intel_iommu=on" in words
    assert "pinharness.root=ph-rootfs" in words and "pinharness.modules=ph-modules" in words
    assert f"pinharness.key={key.cmdline_value()}" in words and words[-1] == "foo=1"
    assert all(" " not in w for w in words)
    canary = kernel_cmdline(VMOptions(), None, modules=False, canary=True)
    assert "pinharness.canary=1" in canary and not any(w.startswith("pinharness.key") for w in canary)


def test_disk_by_serial_shell_finds_the_serial(tmp_path):
    # run the snippet against a fake /sys/block
    block = tmp_path / "sys" / "block"
    for dev, serial in (("vda", "ph-rootfs"), ("vdc", "scratch0")):
        (block / dev).mkdir(parents=True)
        (block / dev / "serial").write_text(serial + "\n")
    script = disk_by_serial_shell("scratch0").replace("/sys/block", str(block))
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=30)
    assert out.stdout.strip() == "/dev/vdc"


def test_require_vm_counts_by_marker_not_by_a_folder_named_vm(pytester):
    """tests/unit/vm/ holds unit tests: its name makes "vm" a keyword of theirs, not a VM test."""
    pytester.mkdir("vm")
    pytester.path.joinpath("vm", "test_unit.py").write_text(
        "import pytest\n\ndef test_pure():\n    assert True\n\n"
        "def test_skipped_unit():\n    pytest.skip('not a guest')\n")
    pytester.makepyfile(test_guest="import pytest\n\n@pytest.mark.vm\ndef test_guest():\n    assert True\n")
    result = pytester.runpytest("-p", "harness.pytest_plugin", "--require-vm")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*--require-vm: 1 VM tests ran, none skipped*"])


def test_require_vm_counts_tests_marked_by_their_guest_fixture(pytester):
    """A test that uses the vm fixture is a VM test even without @pytest.mark.vm (the plugin marks it)."""
    pytester.makepyfile(test_f='''
import pytest

@pytest.fixture
def vm():
    return "a stand-in guest"

def test_uses_a_guest(vm):
    assert vm
''')
    result = pytester.runpytest("-p", "harness.pytest_plugin", "--require-vm")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*--require-vm: 1 VM tests ran, none skipped*"])


def test_an_oom_kill_fails_no_test_but_a_warning_does():
    from harness.pytest_plugin import kernel_problems

    golden = Path(__file__).resolve().parent.parent / "golden" / "console"
    assert kernel_problems((golden / "oom-kill-global-and-memcg.log").read_text()) == []
    warn = (golden / "syzbot-warning-ext4_dirty_folio.log").read_text()
    assert kernel_problems(warn) == ["WARNING in ext4_dirty_folio"]
