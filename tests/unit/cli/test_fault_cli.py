"""Fault injection at the command line, with the VM layer replaced by fakes (issue 16): an
interrupted or failed run keeps the results of the cells that finished and no scratch images;
names are checked before any setup; `boot` keeps stdout for guest output; a failed KVM canary
leaves no ph-* directory; ENOSPC anywhere is one line, never a traceback."""
import errno
import json
import os
import signal
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness.cli import boot as boot_cmd
from harness.cli import parser as cli
from harness.cli import run as run_cmd
from harness.errors import EmulationFailure, GuestHang, HarnessError, NoSpace, QemuDied, Terminated
from harness.pins.matrix import CellResult
from harness.vm import vm as vm_mod
from harness.vm.guest import CommandResult
from harness.vm.qemu import AccelChoice

pytestmark = pytest.mark.fault


@dataclass
class FakeKernel:
    spec: str
    release: str = "6.1.0-57-amd64"
    name: str = "debian-6.1"
    image: Path = Path("/nonexistent")
    config: dict = field(default_factory=dict)  # unknown, as for a bare bzImage: every cell is kept
    arch: str = "x86_64"

    def missing_config(self, *options):
        return []

    def describe(self):
        return {"name": self.name, "source": self.spec, "release": self.release}


def fake_setup(monkeypatch, calls: list):
    def build_rootfs(paths, log=print, arch="x86_64"):
        calls.append("build_rootfs")
        log("pinharness: building guest image bookworm-0000 with mmdebstrap (about a minute)")

    def resolve(spec, paths, modules=None, log=print, **kw):
        calls.append("resolve")
        return FakeKernel(spec)

    for mod in (run_cmd, boot_cmd):
        monkeypatch.setattr(mod, "build_rootfs", build_rootfs)
        monkeypatch.setattr(mod.kernel_mod, "resolve", resolve)
    monkeypatch.setattr(run_cmd, "pick_accel", lambda *a: calls.append("accel") or AccelChoice("tcg", "no /dev/kvm"))


def failing_run_cell(fail_at: int, exc: BaseException, ran: list):
    def run_cell(cell, kernel, image, paths, out, accel, options, pages, log):
        workdir = out / cell.id
        workdir.mkdir(parents=True, exist_ok=True)
        ran.append(cell.id)
        if len(ran) == fail_at:
            (workdir / "scratch0.ext4.img").write_bytes(b"\0" * 4096)  # what an interrupted cell leaves
            (workdir / "src.img").write_bytes(b"\0" * 4096)
            raise exc
        return CellResult(cell, release=kernel.release, status="EXPECTED", ok=True, outcome="CLEAN", kind="CLEAN",
                          accel=accel.accel, artifacts=str(workdir))
    return run_cell


RUN = ["run", "--kernel", "debian:6.1", "--fs", "ext4,xfs", "--workload", "odirect"]


@pytest.mark.parametrize("jobs", [1, 2])
@pytest.mark.parametrize("exc,code", [(KeyboardInterrupt(), 130), (NoSpace("no space left in /out"), 2),
                                      (HarnessError("mkfs.xfs failed"), 2),
                                      (OSError(errno.ENOSPC, "No space left on device"), 2)],
                         ids=["sigint", "nospace", "harness-error", "raw-enospc"])
def test_stopped_run_keeps_finished_cells_and_no_scratch_images(tmp_path, monkeypatch, capsys, exc, code, jobs):
    ran, calls = [], []
    fake_setup(monkeypatch, calls)
    monkeypatch.setattr(run_cmd, "run_cell", failing_run_cell(2, exc, ran))
    out = tmp_path / "out"
    assert cli.main(RUN + ["--out", str(out), "--jobs", str(jobs), "--stressor", "reclaim",
                           "--stressor", "none"]) == code
    doc = json.loads((out / "results.json").read_text())
    finished = len(doc["cells"])
    assert 1 <= finished < 4 and doc["cells_planned"] == 4 and ("NoSpace" if isinstance(exc, OSError) else type(exc).__name__) in doc["interrupted"]
    assert len(ET.parse(out / "junit.xml").getroot().findall("testcase")) == finished
    assert list(out.rglob("*.img")) == []
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("pinharness: ")
    if isinstance(exc, OSError):  # a raw ENOSPC from a cell's own files names the results directory
        assert f"no space left in {out}" in err


class SigtermSelf(Exception):
    """Stands for `kill PID` arriving while a cell runs (failing_run_cell raises it: we send SIGTERM)."""


@pytest.mark.parametrize("jobs", [1, 2])
def test_sigterm_mid_run_unwinds_like_ctrl_c(tmp_path, monkeypatch, capsys, jobs):
    ran, calls = [], []
    fake_setup(monkeypatch, calls)
    inner = failing_run_cell(2, SigtermSelf(), ran)

    def run_cell(*args, **kw):
        try:
            return inner(*args, **kw)
        except SigtermSelf:
            os.kill(os.getpid(), signal.SIGTERM)  # the handler raises at the next bytecode
            time.sleep(5)
            raise AssertionError("SIGTERM did not interrupt the cell")
    monkeypatch.setattr(run_cmd, "run_cell", run_cell)
    out = tmp_path / "out"
    previous = signal.getsignal(signal.SIGTERM)
    assert cli.main(RUN + ["--out", str(out), "--jobs", str(jobs)]) == 143
    assert signal.getsignal(signal.SIGTERM) is previous  # restored for whoever called main()
    doc = json.loads((out / "results.json").read_text())
    assert len(doc["cells"]) == 1 and doc["interrupted"] == "Terminated"
    assert list(out.rglob("*.img")) == []
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == "pinharness: terminated (SIGTERM)" and "Traceback" not in err


@pytest.mark.parametrize("argv,what", [
    (["--fs", "btrfs"], "unknown file system 'btrfs'"),
    (["--fs", "ext4,zfs"], "unknown file system 'zfs'"),
    (["--workload", "nosuch"], "unknown workload 'nosuch'"),
    (["--stressor", "reclaim+nosuch"], "unknown stressor 'nosuch'"),
])
def test_run_checks_names_before_any_setup(tmp_path, monkeypatch, capsys, argv, what):
    calls = []
    fake_setup(monkeypatch, calls)
    assert cli.main(["run", "--kernel", "debian:6.1", "--out", str(tmp_path / "out"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert what in err and err.count("\n") == 0 and calls == [] and not (tmp_path / "out").exists()


def test_boot_unknown_fs_is_rejected_before_setup(monkeypatch, capsys):
    calls = []
    fake_setup(monkeypatch, calls)
    with pytest.raises(SystemExit) as exc:
        cli.main(["boot", "--fs", "btrfs"])
    assert exc.value.code == 2 and calls == [] and "invalid choice: 'btrfs'" in capsys.readouterr().err


class FakeVM:
    """What `boot` sees of a VM: a log callback for harness messages, and guest commands."""

    def __init__(self, kernel, image, paths, workdir, options, disks=(), log=print):
        self.log, self.boot_seconds = log, 1.0
        self.accel = AccelChoice("tcg", "no /dev/kvm")
        self.machine = type("M", (), {"ssh_port": 2222})()

    def __enter__(self):
        self.log("pinharness: warning: KVM not used, falling back to TCG (no /dev/kvm)")
        return self

    def __exit__(self, *exc):
        return None

    def run(self, command, timeout):
        return CommandResult(command, 0, f"guest says {command}\n", "", 0.1)


def test_boot_stdout_is_guest_output_alone(tmp_path, monkeypatch, capsys):
    fake_setup(monkeypatch, [])
    monkeypatch.setattr(boot_cmd, "VM", FakeVM)
    assert cli.main(["boot", "--artifacts", str(tmp_path), "uname -r", "id"]) == 0
    cap = capsys.readouterr()
    assert cap.out == "guest says uname -r\nguest says id\n"
    assert "falling back to TCG" in cap.err and "building guest image" in cap.err


def test_boot_removes_its_temp_dir_unless_something_failed(tmp_path, monkeypatch, capsys):
    """Without --artifacts, a boot that ended well leaves no directory behind; a failed command (or
    a failed boot) keeps the console log and says where."""
    fake_setup(monkeypatch, [])
    monkeypatch.setattr(boot_cmd, "VM", FakeVM)
    monkeypatch.setattr(boot_cmd.tempfile, "tempdir", str(tmp_path))
    assert cli.main(["boot", "uname -r"]) == 0
    assert list(tmp_path.iterdir()) == [] and "kept in" not in capsys.readouterr().err

    class FailingCommand(FakeVM):
        def run(self, command, timeout):
            return CommandResult(command, 3, "", "no\n", 0.1)

    monkeypatch.setattr(boot_cmd, "VM", FailingCommand)
    assert cli.main(["boot", "false"]) == 3
    kept = list(tmp_path.iterdir())
    assert len(kept) == 1 and kept[0].name.startswith("pinharness-boot-")
    assert f"console log and artifacts kept in {kept[0]}" in capsys.readouterr().err


# ---------------------------------------------------------------- ph-* socket directories

class FailingMachine:
    """A QEMU that fails the way a broken KVM does."""

    def __init__(self, exc):
        self.exc = exc

    def __call__(self, cfg, workdir, log=print):
        self.cfg = cfg
        return self

    def __enter__(self):
        return self

    def __exit__(self, *a):
        return None

    def start(self):
        assert self.cfg.qmp_socket.parent.name.startswith("ph-")
        self.cfg.qmp_socket.write_text("")  # QEMU made its socket before it failed
        raise self.exc

    def close(self):
        pass


@pytest.mark.parametrize("exc", [QemuDied("QEMU exited (status 1)"), GuestHang("no console output for 6s"),
                                 KeyboardInterrupt()], ids=lambda e: type(e).__name__)
def test_failed_kvm_canary_leaves_no_socket_directory(tmp_path, monkeypatch, exc):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(vm_mod, "build_initramfs", lambda kernel, paths: tmp_path / "initrd")
    monkeypatch.setattr(vm_mod.kernel_image, "kind", lambda path, arch="x86_64": "bzimage")
    monkeypatch.setattr(vm_mod, "Machine", FailingMachine(exc))
    monkeypatch.setattr("harness.vm.qemu.kvm_usable_device", lambda: None)
    kern = FakeKernel("debian:6.1")
    if isinstance(exc, KeyboardInterrupt):
        with pytest.raises(KeyboardInterrupt):
            vm_mod.pick_accel("auto", kern, None, tmp_path / "work", log=lambda s: None)
    else:
        assert vm_mod.pick_accel("auto", kern, None, tmp_path / "work", log=lambda s: None).accel == "tcg"
    assert list((tmp_path / "tmp").iterdir()) == []


@pytest.mark.parametrize("exc", [QemuDied("QEMU exited (status 0)"), KeyboardInterrupt()],
                         ids=lambda e: type(e).__name__)
def test_failed_boot_leaves_no_socket_directory(tmp_path, monkeypatch, exc):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(vm_mod, "build_initramfs", lambda kernel, paths, log=None: tmp_path / "initrd")
    monkeypatch.setattr(vm_mod, "build_modules_disk", lambda kernel, paths, log=None: None)
    monkeypatch.setattr(vm_mod.kernel_image, "kind", lambda path, arch="x86_64": "bzimage")

    class Machine(FailingMachine):
        exit_status = None

        def quit(self, timeout):
            pass

        def alive(self):
            return False

    monkeypatch.setattr(vm_mod, "Machine", Machine(exc))
    image = type("Img", (), {"rootfs": tmp_path / "rootfs.ext4"})()
    vm = vm_mod.VM(FakeKernel("debian:6.1"), image, None, tmp_path / "work",  # type: ignore[arg-type]
                   options=vm_mod.VMOptions(snapshot=False),
                   accel=AccelChoice("tcg", "requested"), log=lambda s: None)
    with pytest.raises(type(exc)):
        vm.boot()
    assert list((tmp_path / "tmp").iterdir()) == []


def test_a_failed_kvm_canary_is_remembered_until_the_host_reboots(tmp_path, monkeypatch):
    """A KVM that failed its canary (6 s of silence on a PVM backend) is not probed again by every
    command since the host booted; --accel kvm probes again, and another boot_id forgets it."""
    from harness.vm.host import Paths

    calls = []
    key = {"boot_id": "boot-1", "kvm": ["/dev/kvm", 1, 1], "qemu": ["qemu", 1, 1]}
    monkeypatch.setattr(vm_mod, "_kvm_key", lambda: dict(key))
    monkeypatch.setattr("harness.vm.qemu.kvm_usable_device", lambda: None)

    def canary(*a, **kw):
        calls.append(1)
        raise GuestHang("no console output for 6s while waiting for the kvm canary boot")

    monkeypatch.setattr(vm_mod, "canary_boot", canary)
    paths, kern, notes = Paths(tmp_path / "cache"), FakeKernel("debian:6.1"), []
    first = vm_mod.pick_accel("auto", kern, paths, tmp_path / "w", log=notes.append)
    assert first.accel == "tcg" and first.reason.startswith("KVM canary boot failed") and len(calls) == 1
    again = vm_mod.pick_accel("auto", kern, paths, tmp_path / "w", log=notes.append)
    assert again == first and len(calls) == 1  # remembered
    assert "found earlier since this host booted" in notes[-1]
    with pytest.raises(EmulationFailure):
        vm_mod.pick_accel("kvm", kern, paths, tmp_path / "w", log=notes.append)
    assert len(calls) == 2  # an explicit --accel kvm probes again
    key["boot_id"] = "boot-2"
    vm_mod.pick_accel("auto", kern, paths, tmp_path / "w", log=notes.append)
    assert len(calls) == 3  # the host rebooted: probed again


@pytest.mark.parametrize("exc,signum", [(KeyboardInterrupt(), signal.SIGINT), (Terminated(), signal.SIGTERM)])
def test_a_stop_python_swallowed_is_delivered_again(exc, signum):
    """Ctrl-C landing in an at-fork hook (Python prints "Exception ignored in: <function _releaseLock>")
    was lost and the run went on (a CI trial waited 60 s): the hook sends the same signal again."""
    from types import SimpleNamespace

    from harness.cli import parser as parser_mod

    other, got = [], []
    hook = parser_mod.swallowed_stop_redelivered(other.append)
    previous = signal.signal(signum, lambda s, f: got.append(s))
    try:
        hook(SimpleNamespace(exc_value=exc))
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            time.sleep(0.01)
        hook(SimpleNamespace(exc_value=ValueError("x")))
    finally:
        signal.signal(signum, previous)
    assert got == [signum]
    assert len(other) == 1 and isinstance(other[0].exc_value, ValueError)  # anything else: as before
