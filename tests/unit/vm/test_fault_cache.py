"""Fault injection: cached artifacts are never half-written, half-read or silently poisoned (issue 16)."""
import errno
import json
import multiprocessing
import os
import random
from pathlib import Path

import pytest

from harness.errors import CacheLocked, NoSpace
from harness.vm import cache
from harness.vm.host import Paths
from harness.vm.image import build_initramfs, build_modules_disk
from harness.vm.kernel import Kernel, from_tree
from fault_samples import built_tree

pytestmark = pytest.mark.fault

CONTENT = random.Random(16).randbytes(256 << 10)


class Builder:
    """A build function that writes CONTENT and counts its calls."""

    def __init__(self, content: bytes = CONTENT):
        self.content = content
        self.calls = 0

    def __call__(self, tmp: Path) -> None:
        self.calls += 1
        tmp.write_bytes(self.content)


def corrupt_truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 3])


def corrupt_random_quarter(p: Path) -> None:
    data = bytearray(p.read_bytes())
    at = len(data) // 4
    data[at:at + 8192] = random.Random(1).randbytes(8192)
    p.write_bytes(bytes(data))


def corrupt_zero_head(p: Path) -> None:
    data = bytearray(p.read_bytes())
    data[:65536] = bytes(65536)
    p.write_bytes(bytes(data))


def corrupt_flip_last_byte(p: Path) -> None:
    data = bytearray(p.read_bytes())
    data[-1] ^= 1
    p.write_bytes(bytes(data))


def corrupt_drop_stamp(p: Path) -> None:
    cache.stamp_path(p).unlink()


def corrupt_garble_stamp(p: Path) -> None:
    cache.stamp_path(p).write_text("{not json")


def corrupt_append(p: Path) -> None:
    with open(p, "ab") as f:
        f.write(b"x")


def corrupt_empty(p: Path) -> None:
    p.write_bytes(b"")


CORRUPTIONS = [corrupt_truncate, corrupt_random_quarter, corrupt_zero_head, corrupt_flip_last_byte,
               corrupt_drop_stamp, corrupt_garble_stamp, corrupt_append, corrupt_empty]


def test_built_once_then_reused(tmp_path):
    b = Builder()
    path = tmp_path / "art.img"
    assert cache.atomic_artifact(path, b) == path and b.calls == 1
    assert cache.atomic_artifact(path, b) == path and b.calls == 1
    assert path.read_bytes() == CONTENT
    assert json.loads(cache.stamp_path(path).read_text())["size"] == len(CONTENT)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art.img", "art.img.lock", "art.img.stamp"]


@pytest.mark.parametrize("corrupt", CORRUPTIONS, ids=lambda f: f.__name__)
def test_corrupt_file_artifact_is_rebuilt_with_a_note(tmp_path, corrupt):
    b, notes = Builder(), []
    path = tmp_path / "rootfs.ext4"
    cache.atomic_artifact(path, b)
    corrupt(path)
    assert cache.problem(path) is not None
    cache.atomic_artifact(path, b, log=notes.append)
    assert b.calls == 2 and path.read_bytes() == CONTENT and cache.problem(path) is None
    assert len(notes) == 1 and "\n" not in notes[0] and str(path) in notes[0] and "rebuilding" in notes[0]


def _tree(tmp: Path) -> None:
    (tmp / "lib" / "modules" / "6.13.0").mkdir(parents=True)
    (tmp / "lib" / "modules" / "6.13.0" / "modules.dep").write_text("kernel/fs/ext4.ko:\n")
    (tmp / "lib" / "modules" / "6.13.0" / "ext4.ko").write_bytes(CONTENT)
    (tmp / "lib" / "modules" / "6.13.0" / "build").symlink_to("/nonexistent/src")


@pytest.mark.parametrize("corrupt", [
    lambda r: (r / "lib/modules/6.13.0/modules.dep").unlink(),
    lambda r: (r / "lib/modules/6.13.0/ext4.ko").write_bytes(b"\0" * 100),
    lambda r: (r / "lib/modules/6.13.0/ext4.ko").write_bytes(CONTENT[:-1] + b"!"),
    lambda r: (r / "lib/modules/6.13.0/stray.ko").write_bytes(b""),
    lambda r: (r / "lib/modules/6.13.0/build").unlink(),
    lambda r: cache.stamp_path(r).unlink(),
], ids=["file-gone", "zeroed", "one-byte", "extra-file", "link-gone", "no-stamp"])
def test_corrupt_directory_artifact_is_rebuilt(tmp_path, corrupt):
    calls, notes = [], []
    root = tmp_path / "tree-modules" / "6.13.0-abc"
    root.parent.mkdir()
    build = lambda tmp: (calls.append(1), _tree(tmp))  # noqa: E731
    cache.atomic_artifact(root, build)
    corrupt(root)
    cache.atomic_artifact(root, build, log=notes.append)
    assert len(calls) == 2 and len(notes) == 1 and cache.problem(root) is None
    assert (root / "lib/modules/6.13.0/ext4.ko").read_bytes() == CONTENT


class Boom(Exception):
    pass


@pytest.mark.parametrize("stage", ["before-writing", "half-written", "directory-half-written"])
def test_failed_build_leaves_nothing_behind(tmp_path, stage):
    path = tmp_path / "art"

    def build(tmp: Path) -> None:
        if stage == "half-written":
            tmp.write_bytes(CONTENT[:1000])
        elif stage == "directory-half-written":
            _tree(tmp)
        raise Boom()

    with pytest.raises(Boom):
        cache.atomic_artifact(path, build)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art.lock"]
    b = Builder()
    assert cache.atomic_artifact(path, b).read_bytes() == CONTENT and b.calls == 1


@pytest.mark.parametrize("how", ["oserror", "write-fails"])
def test_enospc_while_building_is_named_and_leaves_nothing(tmp_path, how):
    path = tmp_path / "art"

    def build(tmp: Path) -> None:
        tmp.write_bytes(CONTENT[:4096])
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp))

    with pytest.raises(NoSpace) as exc:
        cache.atomic_artifact(path, build)
    msg = str(exc.value)
    assert "\n" not in msg and str(tmp_path) in msg and "MiB free" in msg
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art.lock"]


def test_interrupted_build_is_removed(tmp_path):
    path = tmp_path / "art"

    def build(tmp: Path) -> None:
        tmp.write_bytes(CONTENT[:10])
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache.atomic_artifact(path, build)
    assert not path.exists() and not list(tmp_path.glob("art.tmp-*"))


def test_stale_temp_of_a_dead_process_is_cleared(tmp_path):
    path = tmp_path / "art"
    (tmp_path / "art.tmp-999999").write_bytes(b"half")
    (tmp_path / "art.stamp.tmp-999999").write_text("{}")
    cache.atomic_artifact(path, Builder())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art", "art.lock", "art.stamp"]


def test_lock_held_too_long_is_a_named_error(tmp_path):
    path = tmp_path / "art"
    with cache.artifact_lock(path):
        with pytest.raises(CacheLocked) as exc:
            cache.atomic_artifact(path, Builder(), lock_timeout=0.3)
    msg = str(exc.value)
    assert f"pid {os.getpid()}" in msg and str(cache.lock_path(path)) in msg and "\n" not in msg
    assert not path.exists()


def _racer(path: str, counter: str, out: str) -> None:
    import time

    def build(tmp: Path) -> None:
        with open(counter, "a") as f:
            f.write("built\n")
        with open(tmp, "wb") as f:  # slowly, so a racer that did not wait would see half of it
            for i in range(0, len(CONTENT), 32768):
                f.write(CONTENT[i:i + 32768])
                f.flush()
                time.sleep(0.02)

    got = cache.atomic_artifact(Path(path), build)
    Path(out).write_bytes(got.read_bytes())


@pytest.mark.parametrize("racers", [2, 3, 4])
def test_processes_building_one_artifact_wait_for_each_other(tmp_path, racers):
    ctx = multiprocessing.get_context("fork")
    path, counter = tmp_path / "cache" / "initrd.cpio.gz", tmp_path / "count"
    path.parent.mkdir()
    procs = [ctx.Process(target=_racer, args=(str(path), str(counter), str(tmp_path / f"out{i}")))
             for i in range(racers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert [p.exitcode for p in procs] == [0] * racers
    assert counter.read_text() == "built\n"
    assert all((tmp_path / f"out{i}").read_bytes() == CONTENT for i in range(racers))


# ---------------------------------------------------------------- the real artifacts

def _kernel(tmp_path: Path, modules: bool) -> Kernel:
    image = tmp_path / "bzImage"
    image.write_bytes(b"k" * 4096)
    mods = None
    if modules:
        mods = tmp_path / "mods" / "6.13.0"
        mods.mkdir(parents=True)
        (mods / "modules.dep").write_text("")
        (mods / "modules.order").write_text("")
    return Kernel(name="image-6.13.0", source="image:x", image=image, release="6.13.0", modules_dir=mods)


@pytest.mark.parametrize("corrupt", [corrupt_truncate, corrupt_zero_head, corrupt_random_quarter, corrupt_empty],
                         ids=lambda f: f.__name__)
def test_corrupt_initramfs_is_rebuilt(tmp_path, corrupt):
    paths, notes = Paths(tmp_path / "cache"), []
    kern = _kernel(tmp_path, modules=False)
    first = build_initramfs(kern, paths)
    good = first.read_bytes()
    corrupt(first)
    again = build_initramfs(kern, paths, log=notes.append)
    assert again == first and again.read_bytes() == good and len(notes) == 1


@pytest.mark.parametrize("corrupt", [corrupt_truncate, corrupt_zero_head, corrupt_drop_stamp],
                         ids=lambda f: f.__name__)
def test_corrupt_modules_disk_is_rebuilt(tmp_path, corrupt):
    paths, notes = Paths(tmp_path / "cache"), []
    kern = _kernel(tmp_path, modules=True)
    disk = build_modules_disk(kern, paths)
    size = disk.stat().st_size
    os.chmod(disk, 0o644)
    corrupt(disk)
    again = build_modules_disk(kern, paths, log=notes.append)
    assert again == disk and again.stat().st_size == size and cache.problem(disk) is None and len(notes) == 1


MAKEFILE = """modules_install:
\tmkdir -p $(INSTALL_MOD_PATH)/lib/modules/6.13.0/kernel
\techo 'kernel/ext4.ko:' > $(INSTALL_MOD_PATH)/lib/modules/6.13.0/modules.dep
\techo x > $(INSTALL_MOD_PATH)/lib/modules/6.13.0/kernel/ext4.ko
\techo run >> count
"""


@pytest.mark.parametrize("corrupt", ["modules.dep", "kernel/ext4.ko", "stamp"])
def test_corrupt_tree_modules_install_is_redone(tmp_path, corrupt):
    tree, paths, notes = built_tree(tmp_path, MAKEFILE), Paths(tmp_path / "cache"), []
    moddir = from_tree(tree, paths, log=lambda s: None).modules_dir
    assert (moddir / "modules.dep").exists()
    root = moddir.parents[2]
    if corrupt == "stamp":
        cache.stamp_path(root).unlink()
    else:
        (moddir / corrupt).write_text("garbage\n")
    again = from_tree(tree, paths, log=notes.append).modules_dir
    assert again == moddir and (moddir / "kernel/ext4.ko").read_text() == "x\n"
    assert (tree / "count").read_text() == "run\nrun\n"
    assert any("rebuilding" in n for n in notes)


def test_unchanged_artifact_is_trusted_without_rehashing(tmp_path, monkeypatch):
    path = tmp_path / "rootfs.ext4"
    cache.atomic_artifact(path, Builder())

    def no_read(p):
        raise AssertionError("an untouched artifact is not read again")

    monkeypatch.setattr(cache, "_file_digest", no_read)
    assert cache.problem(path) is None


def test_touched_but_intact_artifact_is_rehashed_and_kept(tmp_path):
    b, notes = Builder(), []
    path = tmp_path / "rootfs.ext4"
    cache.atomic_artifact(path, b)
    os.utime(path, (1, 1))  # metadata changed, content not
    assert cache.problem(path) is None
    cache.atomic_artifact(path, b, log=notes.append)
    assert b.calls == 1 and notes == []
