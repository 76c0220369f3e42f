"""Panics, hangs, killed QEMU and timeouts each end within their timeout, with the
cause named, the console log kept and no QEMU process left."""
import os
import signal
import time

import pytest

from harness.errors import BootTimeout, CommandTimeout, EmulationFailure, GuestHang, GuestPanic, QemuDied
from harness.vm.qemu import kvm_usable_device
from harness.vm.vm import pick_accel
from vm_faults import boot_vm as _vm, close_and_check, gone as _gone

pytestmark = pytest.mark.vm


@pytest.mark.fault
def test_panic_is_named_and_qemu_reaped(ph_session, kernel, guest_image, tmp_path):
    vm = _vm(ph_session, kernel, guest_image, tmp_path).boot()
    t0 = time.monotonic()
    with pytest.raises(GuestPanic, match="sysrq triggered crash|Fatal exception|panic"):
        vm.run("echo c > /proc/sysrq-trigger", timeout=60)
    assert time.monotonic() - t0 < 60
    close_and_check(vm)
    log = (tmp_path / "vm" / "console.log").read_text(errors="replace")
    assert "Kernel panic - not syncing" in log


@pytest.mark.fault
def test_hang_is_named(ph_session, kernel, guest_image, tmp_path):
    vm = _vm(ph_session, kernel, guest_image, tmp_path).boot()
    # Starve every user process: an RT busy loop with RT throttling off on the only vCPU
    # (and, from 6.12, the fair-class deadline server that would still feed sshd switched off).
    vm.run("echo -1 > /proc/sys/kernel/sched_rt_runtime_us; "
           "for f in /sys/kernel/debug/sched/fair_server/cpu*/runtime; do [ -e $f ] && echo 0 > $f; done; true",
           timeout=30, check=True)
    t0 = time.monotonic()
    with pytest.raises(GuestHang, match="stopped answering"):
        vm.run("setsid chrt -f 99 sh -c 'while :; do :; done' </dev/null >/dev/null 2>&1 & sleep 1; "
               "echo still here", timeout=15)
    assert time.monotonic() - t0 < 60
    close_and_check(vm)  # a hung guest closes in <= 5 s


@pytest.mark.fault
def test_killed_qemu_is_named(ph_session, kernel, guest_image, tmp_path):
    vm = _vm(ph_session, kernel, guest_image, tmp_path).boot()
    pid = vm.machine.child.pid
    os.kill(pid, signal.SIGKILL)
    t0 = time.monotonic()
    with pytest.raises(QemuDied, match="QEMU exited"):
        vm.run("sleep 30", timeout=60)
    assert time.monotonic() - t0 < 30
    close_and_check(vm)
    assert "PINHARNESS-READY" in (tmp_path / "vm" / "console.log").read_text(errors="replace")


def test_command_timeout_leaves_the_guest_usable(ph_session, kernel, guest_image, tmp_path):
    with _vm(ph_session, kernel, guest_image, tmp_path) as vm:
        t0 = time.monotonic()
        with pytest.raises(CommandTimeout, match="did not finish in 3s"):
            vm.run("sleep 600", timeout=3)
        assert time.monotonic() - t0 < 30
        assert vm.run("echo alive", timeout=30).stdout == "alive\n"
        pid = vm.machine.child.pid
    assert _gone(pid)


def test_boot_timeout_is_named_and_console_kept(ph_session, kernel, guest_image, tmp_path):
    vm = _vm(ph_session, kernel, guest_image, tmp_path, boot_timeout=1.0, snapshot=False)  # a boot, not a restore
    with pytest.raises(BootTimeout, match="timed out after 1s waiting for the guest to boot"):
        vm.boot()
    assert vm.machine is not None and not vm.machine.alive()
    assert _gone(vm.machine.child.pid)
    assert (tmp_path / "vm" / "console.log").exists()
    assert "boot failed: BootTimeout" in (tmp_path / "vm" / "vm.json").read_text()


def test_accel_auto_settles_and_says_why(ph_session, kernel, tmp_path):
    choice = pick_accel("auto", kernel, ph_session.paths, tmp_path, log=lambda s: None)
    problem = kvm_usable_device()
    if problem is not None:
        assert choice.accel == "tcg" and choice.reason == problem
    elif choice.accel == "tcg":
        assert choice.reason.startswith("KVM canary boot failed")
        with pytest.raises(EmulationFailure, match="--accel kvm requested but KVM canary boot failed"):
            pick_accel("kvm", kernel, ph_session.paths, tmp_path, log=lambda s: None)
    else:
        assert choice.reason == "canary boot under KVM reached userspace"
