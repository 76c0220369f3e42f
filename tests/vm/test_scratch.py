"""Fresh ext4/xfs scratch disks made on the host, mounted in the guest."""
import pytest

from harness.vm.image import fsck


def test_scratch_fs_is_mounted_and_writable(scratch_fs, vm):
    found = vm.run(f"findmnt -n -o FSTYPE {scratch_fs.mountpoint}", timeout=30).stdout.strip()
    assert found == scratch_fs.fs
    vm.run(f"dd if=/dev/urandom of={scratch_fs.mountpoint}/f bs=64k count=16 status=none && sync",
           timeout=60, check=True)
    size = vm.run(f"stat -c %s {scratch_fs.mountpoint}/f", timeout=30).stdout.strip()
    assert size == str(64 * 1024 * 16)


def test_scratch_disk_survives_poweroff_and_checks_clean(scratch_fs, vm):
    vm.run(f"echo persisted > {scratch_fs.mountpoint}/note && sync", timeout=30, check=True)
    vm.poweroff()
    clean, out = fsck(scratch_fs.disk)
    assert clean, out


@pytest.mark.mkfs(ext4=["-b", "1024", "-O", "^has_journal"], xfs=["-b", "size=1024"])
def test_mkfs_options_are_applied(scratch_fs, vm):
    bsize = vm.run(f"stat -f -c %S {scratch_fs.mountpoint}", timeout=30).stdout.strip()
    assert bsize == "1024"
