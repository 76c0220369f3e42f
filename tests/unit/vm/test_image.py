"""Initramfs assembly, module ordering and scratch disks (host-side only)."""
import gzip
import subprocess
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.vm.image import Recipe, _cpio_newc, fsck, make_scratch_disk, module_load_order


def test_module_load_order_puts_dependencies_first(tmp_path):
    (tmp_path / "modules.dep").write_text(
        "kernel/fs/ext4/ext4.ko.xz: kernel/fs/jbd2/jbd2.ko.xz kernel/fs/mbcache.ko.xz kernel/lib/crc16.ko.xz\n"
        "kernel/fs/jbd2/jbd2.ko.xz:\nkernel/fs/mbcache.ko.xz:\nkernel/lib/crc16.ko.xz:\n"
        "kernel/drivers/block/virtio_blk.ko.xz:\nkernel/arch/x86/crypto/crc32c-intel.ko.xz:\n")
    order = [p.name for p in module_load_order(tmp_path, ["virtio_blk", "crc32c_intel", "ext4", "nonexistent"])]
    assert order == ["virtio_blk.ko.xz", "crc32c-intel.ko.xz", "jbd2.ko.xz", "mbcache.ko.xz", "crc16.ko.xz",
                     "ext4.ko.xz"]


def test_cpio_archive_is_readable_by_cpio(tmp_path):
    archive = _cpio_newc([("bin", 0o040755, b""), ("bin/hello", 0o100755, b"#!/bin/sh\necho hi\n"),
                          ("odd", 0o100644, b"abc")])
    (tmp_path / "a.cpio").write_bytes(archive)
    listing = subprocess.run(["cpio", "-t", "-F", str(tmp_path / "a.cpio")], capture_output=True, text=True)
    assert listing.stdout.split() == ["bin", "bin/hello", "odd"]
    out = tmp_path / "x"
    out.mkdir()
    subprocess.run(["cpio", "-id", "-F", str(tmp_path / "a.cpio")], cwd=out, check=True, capture_output=True)
    assert (out / "odd").read_bytes() == b"abc"


def test_recipe_digest_changes_with_content(tmp_path):
    (tmp_path / "packages.txt").write_text("# c\nopenssh-server\nfio\n")
    r = Recipe(tmp_path)
    assert r.packages == ["openssh-server", "fio"]
    d1 = r.digest()
    (tmp_path / "init").write_text("#!/bin/sh\n")
    assert Recipe(tmp_path).digest() != d1
    assert Recipe(tmp_path, suite="trixie").digest() != Recipe(tmp_path).digest()


@pytest.mark.parametrize("fs", ["ext4", "xfs"])
def test_scratch_disk_is_fresh_sparse_and_checks_clean(tmp_path, fs):
    disk = make_scratch_disk(tmp_path, fs, size_mb=320)
    st = disk.path.stat()
    assert st.st_size == 320 << 20 and st.st_blocks * 512 < st.st_size  # sparse
    clean, out = fsck(disk)
    assert clean, out


def test_scratch_disk_bad_options_are_one_line_errors(tmp_path):
    with pytest.raises(HarnessError, match="unknown file system 'btrfs'"):
        make_scratch_disk(tmp_path, "btrfs")
    with pytest.raises(HarnessError, match="mkfs.ext4 --bogus failed"):
        make_scratch_disk(tmp_path, "ext4", mkfs_options=["--bogus"])
