"""The plugin's post-test check, end to end: an inner pytest run whose test
provokes a real kernel report in a real guest must fail with that report's
title, and keep the report in its artifacts."""
import json

import pytest

from harness.pins import oracle

pytestmark = pytest.mark.vm

INNER_WARNING = '''
import pytest

@pytest.mark.parametrize("fs_type", ["ext4"])
@pytest.mark.workload("odirect", stressors="{stressors}")
def test_inner(vm, scratch_fs, pin_workload):
    run = pin_workload()
    assert run.result["pin"]["errno"] == 0   # the test itself passes...
'''

INNER_HUNG = '''
import time
import pytest

@pytest.mark.parametrize("fs_type", ["ext4"])
def test_inner(vm, scratch_fs):
    vm.run("echo 2 > /proc/sys/kernel/hung_task_timeout_secs", timeout=30, check=True)
    vm.run(f"fsfreeze -f {scratch_fs.mountpoint}", timeout=30, check=True)
    vm.run(f"setsid sh -c 'echo x > {scratch_fs.mountpoint}/blocked' </dev/null >/dev/null 2>&1 &", timeout=30)
    vm.machine.wait_for("blocked for more than", 60, "the hung task report")
    vm.run(f"fsfreeze -u {scratch_fs.mountpoint}", timeout=30, check=True)
'''


def _run_inner(pytester, ph_session, kernel, kernel_spec, source):
    pytester.makepyfile(test_inner=source)
    art = pytester.path / "artifacts"
    result = pytester.runpytest_subprocess(
        "--kernel", kernel_spec, "--accel", ph_session.accel_for(kernel).accel,
        "--artifacts", str(art), "-p", "no:cacheprovider", timeout=900)
    return result, art


def test_warning_fails_the_test_with_its_title(pytester, ph_session, kernel, kernel_spec):
    # The oracle knows which stressors make odirect warn on this kernel.
    rows = [r for r in oracle.load() if r.workload == "odirect" and r.fs == "ext4" and "WARNING" in r.expect
            and oracle.kernel_matches(r.kernel, kernel.version_tuple, kernel.config)]
    assert rows, f"no odirect/ext4 WARNING cell for {kernel.release} in the oracle"
    stressors = rows[0].stressors
    ph_session.accel_for(kernel)
    result, art = _run_inner(pytester, ph_session, kernel, kernel_spec, INNER_WARNING.format(stressors=stressors))
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*kernel reported during the test: *WARNING in ext4_dirty_folio*"])
    outcome = json.loads(next(art.rglob("outcome.json")).read_text())
    assert outcome["outcome"] == "failed" and "WARNING in ext4_dirty_folio" in outcome["kernel_reports"]
    reports = next(art.rglob("reports.txt")).read_text()
    assert reports.startswith("==== crash 1/") and ": WARNING in ext4_dirty_folio" in reports
    assert "Call Trace:" in reports


def test_hung_task_fails_the_test_with_its_title(pytester, ph_session, kernel, kernel_spec):
    ph_session.accel_for(kernel)
    result, art = _run_inner(pytester, ph_session, kernel, kernel_spec, INNER_HUNG)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*kernel reported during the test: INFO: task hung in *"])
