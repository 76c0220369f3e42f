"""Restored guests: each one starts from the saved state and nothing of another's (files, modules,
sysctls, page cache, buffer heads), with the host's clock and its own random state; a corrupt
snapshot is rebuilt, never restored; --no-snapshot boots afresh. That pin cells restored from a
snapshot reproduce the known bugs is checked by every matrix test (check_cell reads vm.json)."""
import json
import re
import time

import pytest

from harness.vm import snapshot
from harness.vm.vm import VM, VMOptions

pytestmark = pytest.mark.vm

ONE_KERNEL = pytest.mark.parametrize("kernel_spec", ["debian:6.1"], ids=["debian-6.1"], scope="session")


def _vm(ph_session, kernel, guest_image, workdir, notes=None, **opts) -> VM:
    options = VMOptions(accel=ph_session.config.getoption("--accel"), **opts)
    return VM(kernel, guest_image, ph_session.paths, workdir, options, accel=ph_session.accel_for(kernel),
              log=(notes.append if notes is not None else lambda s: None))


def _meminfo(vm: VM, field: str) -> int:
    text = vm.run("cat /proc/meminfo", timeout=30, check=True).stdout
    return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.M).group(1))


def _resident_pages(vm: VM, path: str) -> int:
    return int(vm.run(f"fincore --bytes --noheadings --output PAGES {path}", timeout=30, check=True).stdout.split()[0])


BIG_FILE = "/usr/bin/bash"  # on the rootfs, read at boot by nobody but the shell (mapped, not cached whole)


@ONE_KERNEL
def test_restored_guests_do_not_see_each_others_state(ph_session, kernel, guest_image, tmp_path):
    with _vm(ph_session, kernel, guest_image, tmp_path / "first") as vm:
        assert vm.snapshot, "the guest was booted afresh, not restored"
        base_buffers = _meminfo(vm, "Buffers")
        vm.run("echo leaked > /root/left-behind; modprobe dummy; sysctl -qw vm.dirty_ratio=7; "
               f"cat {BIG_FILE} > /dev/null; dd if=/dev/vda of=/dev/null bs=1M count=64 status=none",
               timeout=120, check=True)
        assert vm.run("cat /sys/module/dummy/initstate", timeout=30).stdout.strip() == "live"
        touched_pages = _resident_pages(vm, BIG_FILE)
        assert _meminfo(vm, "Buffers") >= base_buffers + 60 * 1024  # the 64 MiB read went to buffer heads
        digest = vm.snapshot
    with _vm(ph_session, kernel, guest_image, tmp_path / "second") as vm:
        assert vm.snapshot == digest
        assert vm.run("cat /root/left-behind", timeout=30).exit_status != 0
        assert vm.run("test -e /sys/module/dummy", timeout=30).exit_status != 0
        assert vm.run("sysctl -n vm.dirty_ratio", timeout=30, check=True).stdout.strip() != "7"
        assert _resident_pages(vm, BIG_FILE) < touched_pages
        assert _meminfo(vm, "Buffers") < base_buffers + 16 * 1024


@ONE_KERNEL
def test_restored_guests_get_the_hosts_clock_and_their_own_randomness(ph_session, kernel, guest_image, tmp_path):
    drawn = []
    for n in range(2):
        with _vm(ph_session, kernel, guest_image, tmp_path / f"vm{n}") as vm:
            assert vm.snapshot
            host_before = time.time()
            guest_now = float(vm.run("date +%s.%N", timeout=30, check=True).stdout)
            host_after = time.time()
            assert host_before - 1.0 <= guest_now <= host_after + 1.0, (host_before, guest_now, host_after)
            drawn.append(vm.run("head -c 32 /dev/urandom | od -An -tx1", timeout=30, check=True).stdout)
            assert "crng reseeded due to virtual machine fork" in vm.run("dmesg", timeout=30).stdout
    assert drawn[0] != drawn[1]


@ONE_KERNEL
def test_hot_plugged_disks_are_the_disks_a_cold_boot_gets(ph_session, kernel, guest_image, tmp_path):
    from harness.vm.image import make_scratch_disk
    disk = make_scratch_disk(tmp_path, "ext4", size_mb=64)
    vm = VM(kernel, guest_image, ph_session.paths, tmp_path / "vm",
            VMOptions(accel=ph_session.config.getoption("--accel")), disks=[disk],
            accel=ph_session.accel_for(kernel), log=lambda s: None)
    with vm:
        assert vm.snapshot
        dev = vm.disk(disk.serial)
        assert vm.run(f"blkid -o value -s TYPE {dev}", timeout=30, check=True).stdout.strip() == "ext4"
        assert int(vm.run(f"blockdev --getsize64 {dev}", timeout=30, check=True).stdout) == 64 << 20


@ONE_KERNEL
def test_a_corrupt_snapshot_is_rebuilt_never_restored(ph_session, kernel, guest_image, tmp_path):
    own = ("pinharness.test=corrupt-snapshot",)  # a snapshot of this test's own, so no other user sees it broken
    with _vm(ph_session, kernel, guest_image, tmp_path / "first", cmdline=own) as vm:
        digest = vm.snapshot
    state = ph_session.paths.cache / "snapshots" / digest / snapshot.STATE
    with open(state, "r+b") as f:  # 1 MiB of garbage in the middle of the saved RAM
        f.seek(state.stat().st_size // 2)
        f.write(b"\xa5" * (1 << 20))
    notes = []
    with _vm(ph_session, kernel, guest_image, tmp_path / "second", notes=notes, cmdline=own) as vm:
        assert vm.snapshot == digest
        assert vm.run("uname -r", timeout=30, check=True).stdout.strip() == kernel.release
    assert any("unusable" in n and "rebuilding" in n for n in notes), notes


@ONE_KERNEL
def test_no_snapshot_boots_afresh(ph_session, kernel, guest_image, tmp_path):
    with _vm(ph_session, kernel, guest_image, tmp_path / "vm", snapshot=False) as vm:
        assert vm.snapshot is None
        assert vm.run("uname -r", timeout=30, check=True).stdout.strip() == kernel.release
    summary = json.loads((tmp_path / "vm" / "vm.json").read_text())
    assert summary["snapshot"] is None
    assert "restored from snapshot" not in (tmp_path / "vm" / "console.log").read_text(errors="replace")
