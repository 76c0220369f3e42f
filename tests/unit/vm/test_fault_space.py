"""Fault injection: a full disk at each host-side stage is NoSpace naming the directory, what it
needs and what is free; never a traceback, nothing half-written left (issue 16). The full disk is
/dev/full (writes fail with ENOSPC) or a tool that says "No space left on device"."""
import errno
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from harness.errors import HarnessError, NoSpace, is_enospc, named_enospc
from harness.vm import image as image_mod
from harness.vm.host import Paths, require_space
from harness.vm.kernel import Kernel, from_tree
from harness.vm.qemu import ConsoleStream, Machine, QemuConfig
from fault_samples import built_tree

pytestmark = pytest.mark.fault
ENOSPC_TOOL = "#!/bin/sh\necho \"$0: write failed: No space left on device\" >&2\nexit 1\n"


def one_line_naming(exc, directory) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and str(directory) in msg and "MiB free" in msg
    return msg


def fake_tool(tmp_path: Path, text: str = ENOSPC_TOOL) -> str:
    tool = tmp_path / "bin" / "tool"
    tool.parent.mkdir(exist_ok=True)
    tool.write_text(text)
    tool.chmod(0o755)
    return str(tool)


@pytest.mark.parametrize("exc,named", [
    (OSError(errno.ENOSPC, "No space left on device"), True),
    (OSError(errno.EDQUOT, "Disk quota exceeded"), False),
    (OSError(errno.EACCES, "Permission denied"), False),
    (subprocess.CalledProcessError(1, ["dpkg-deb", "-x"], stderr=b"dpkg-deb: No space left on device"), True),
    (subprocess.CalledProcessError(1, ["mkfs"], output="No space left on device", stderr=None), True),
    (subprocess.CalledProcessError(2, ["tar"], stderr="tar: unexpected EOF"), False),
])
def test_named_enospc_converts_only_enospc(tmp_path, exc, named):
    assert is_enospc(exc) == named
    with pytest.raises(NoSpace if named else type(exc)) as got:
        with named_enospc(tmp_path, "unpacking linux-image", 300 << 20):
            raise exc
    if named:
        assert "needs 300 MiB" in one_line_naming(got, tmp_path)


def test_require_space_is_nospace_with_need_and_free(tmp_path):
    with pytest.raises(NoSpace) as exc:
        require_space(tmp_path, 1 << 60, "building the guest image")
    msg = str(exc.value)
    assert isinstance(exc.value, HarnessError) and str(tmp_path) in msg and "MiB free" in msg and "\n" not in msg


def test_scratch_disk_mkfs_on_a_full_disk(tmp_path, monkeypatch):
    monkeypatch.setattr(image_mod, "require_tool", lambda name: fake_tool(tmp_path))
    (tmp_path / "cell").mkdir()
    with pytest.raises(NoSpace) as exc:
        image_mod.make_scratch_disk(tmp_path / "cell", "xfs")
    one_line_naming(exc, tmp_path / "cell")
    assert list((tmp_path / "cell").iterdir()) == []


def test_modules_disk_mkfs_on_a_full_disk(tmp_path, monkeypatch):
    mods = tmp_path / "mods" / "6.13.0"
    mods.mkdir(parents=True)
    (mods / "modules.dep").write_text("")
    image = tmp_path / "bzImage"
    image.write_bytes(b"k")
    kern = Kernel(name="k", source="image:x", image=image, release="6.13.0", modules_dir=mods)
    monkeypatch.setattr(image_mod, "require_tool", lambda name: fake_tool(tmp_path))
    paths = Paths(tmp_path / "cache")
    with pytest.raises(NoSpace) as exc:
        image_mod.build_modules_disk(kern, paths)
    one_line_naming(exc, paths.cache / "modules-disks")
    assert sorted(p.name for p in (paths.cache / "modules-disks").iterdir()) == [
        f"{image_mod._kernel_key(kern)}.ext4.lock"]


def test_initramfs_on_a_full_disk(tmp_path, monkeypatch):
    image = tmp_path / "bzImage"
    image.write_bytes(b"k")
    kern = Kernel(name="k", source="image:x", image=image, release="6.13.0")
    real_open = open

    def full_open(file, mode="r", *a, **kw):  # the temporary initramfs lands on a full disk
        if ".cpio.gz.tmp-" in str(file) and "w" in mode:
            return real_open("/dev/full", mode, *a, **kw)
        return real_open(file, mode, *a, **kw)

    monkeypatch.setattr("builtins.open", full_open)
    paths = Paths(tmp_path / "cache")
    with pytest.raises(NoSpace) as exc:
        image_mod.build_initramfs(kern, paths)
    one_line_naming(exc, paths.cache / "initramfs")
    assert not [p for p in (paths.cache / "initramfs").iterdir() if not p.name.endswith(".lock")]


def test_tree_modules_install_on_a_full_disk(tmp_path):
    tree = built_tree(tmp_path, "modules_install:\n\tmkdir -p $(INSTALL_MOD_PATH)/lib\n"
                                "\t@echo 'cp: error writing x.ko: No space left on device' >&2; exit 1\n")
    paths = Paths(tmp_path / "cache")
    with pytest.raises(NoSpace) as exc:
        from_tree(tree, paths, log=lambda s: None)
    one_line_naming(exc, paths.cache / "tree-modules")
    assert [p.name for p in (paths.cache / "tree-modules").iterdir() if not p.name.endswith(".lock")] == []


def test_qemu_argv_on_a_full_disk_is_named_before_qemu_starts(tmp_path, monkeypatch):
    work = tmp_path / "vm"
    work.mkdir()
    (work / "qemu-argv.json").symlink_to("/dev/full")
    monkeypatch.setattr("harness.vm.qemu.require_tool", lambda name: "/bin/false")

    def no_spawn(*a, **kw):
        raise AssertionError("QEMU must not start when its artifacts cannot be written")

    monkeypatch.setattr("harness.vm.qemu.pexpect.spawn", no_spawn)
    cfg = QemuConfig(kernel=tmp_path / "bzImage", append=[], console_log=work / "console.log",
                     qmp_socket=tmp_path / "qmp.sock")
    with pytest.raises(NoSpace) as exc:
        Machine(cfg, work).start()
    one_line_naming(exc, work)


class FakeChild:
    """A QEMU pty that prints a few chunks, then ends."""

    def __init__(self, chunks):
        self.chunks = list(chunks)

    def read_nonblocking(self, size, timeout):
        import pexpect
        if not self.chunks:
            raise pexpect.EOF("done")
        return self.chunks.pop(0)


def test_console_log_on_a_full_disk_keeps_the_console(tmp_path, monkeypatch):
    errors = []
    monkeypatch.setattr(threading, "excepthook", lambda args: errors.append(args.exc_value))
    log = tmp_path / "console.log"
    log.symlink_to("/dev/full")
    stream = ConsoleStream(FakeChild([b"Linux version 6.1\r\n", b"Out of memory: Killed process 42 (hog)\r\n"]), log)
    deadline = time.monotonic() + 5
    while not stream.eof and time.monotonic() < deadline:
        time.sleep(0.01)
    stream.close()
    assert errors == [] and stream.eof
    assert "Killed process 42" in stream.text() and "No space left" in (stream.log_error or "")
