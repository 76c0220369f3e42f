"""QEMU command lines are lists built from a config: no shell strings, escaped values."""
from pathlib import Path

import pytest

from harness.vm.image import Disk
from harness.vm.qemu import AccelChoice, QemuConfig, build_argv, choose_accel, drive_args
from harness.errors import EmulationFailure, VMError


def _cfg(**kw) -> QemuConfig:
    base = dict(kernel=Path("/k/bzImage"), append=["console=ttyS0", "panic=-1"], console_log=Path("/a/console.log"),
                qmp_socket=Path("/tmp/ph-x/qmp.sock"))
    base.update(kw)
    return QemuConfig(**base)


def _opt(argv, flag):
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def test_argv_is_a_list_with_the_essentials():
    argv = build_argv(_cfg(initrd=Path("/k/initrd")))
    assert argv[0] == "qemu-system-x86_64"
    assert all(isinstance(a, str) for a in argv)
    assert _opt(argv, "-kernel") == ["/k/bzImage"]
    assert _opt(argv, "-initrd") == ["/k/initrd"]
    assert _opt(argv, "-append") == ["console=ttyS0 panic=-1"]
    assert "-no-reboot" in argv and "-nodefaults" in argv
    assert _opt(argv, "-machine") == ["q35"]
    assert _opt(argv, "-qmp") == ["unix:/tmp/ph-x/qmp.sock,server=on,wait=off"]
    assert _opt(argv, "-serial") == ["chardev:ser0"]


@pytest.mark.parametrize("accel,cpu", [("tcg", "max"), ("kvm", "host")])
def test_cpu_model_follows_accel(accel, cpu):
    argv = build_argv(_cfg(accel=accel))
    assert _opt(argv, "-accel") == [accel]
    assert _opt(argv, "-cpu") == [cpu]


def test_ssh_forward_asks_qemu_for_a_free_loopback_port():
    argv = build_argv(_cfg())
    assert "user,id=net0,hostfwd=tcp:127.0.0.1:0-:22" in _opt(argv, "-netdev")
    assert "-netdev" not in build_argv(_cfg(ssh_forward=False))


def test_iommu_and_extra_devices():
    argv = build_argv(_cfg(iommu=True, devices=["edu"]))
    devices = _opt(argv, "-device")
    assert devices[0] == "intel-iommu"
    assert "edu" in devices


def test_drive_values_are_escaped_and_flags_applied():
    d = Disk(Path("/x/a,b.img"), "scratch0", snapshot=True, extra={"throttling.iops-read": 1})
    args = drive_args(d, 3)
    assert args[0] == "-drive"
    assert "file=/x/a,,b.img" in args[1]
    assert "snapshot=on" in args[1] and "id=drive3" in args[1] and "throttling.iops-read=1" in args[1]
    assert args[3] == "virtio-blk-pci,drive=drive3,serial=scratch0"
    ro = drive_args(Disk(Path("/m.img"), "mods", readonly=True), 0)[1]
    assert "readonly=on" in ro and "snapshot" not in ro


def test_choose_accel_tcg_requested_never_runs_the_canary():
    def canary():
        raise AssertionError("canary must not run")
    assert choose_accel("tcg", canary) == AccelChoice("tcg", "requested")


def test_choose_accel_auto_falls_back_with_a_reason(monkeypatch):
    monkeypatch.setattr("harness.vm.qemu.kvm_usable_device", lambda: None)
    said = []

    def canary():
        raise EmulationFailure("KVM internal error (suberror 1)")
    choice = choose_accel("auto", canary, log=said.append)
    assert choice.accel == "tcg" and "KVM internal error" in choice.reason
    assert len(said) == 1 and said[0].startswith("pinharness: warning: KVM not used")


def test_choose_accel_kvm_requested_but_broken_is_one_line_error(monkeypatch):
    monkeypatch.setattr("harness.vm.qemu.kvm_usable_device", lambda: "no /dev/kvm")
    with pytest.raises(EmulationFailure) as exc:
        choose_accel("kvm", lambda: None)
    assert "\n" not in str(exc.value) and "no /dev/kvm" in str(exc.value)


def test_choose_accel_uses_kvm_when_canary_works(monkeypatch):
    monkeypatch.setattr("harness.vm.qemu.kvm_usable_device", lambda: None)
    assert choose_accel("auto", lambda: None).accel == "kvm"


def test_socket_dirs_of_dead_harness_processes_are_removed_by_the_next_one(tmp_path):
    import os
    from harness.vm.qemu import short_socket_dir
    dead = tmp_path / "ph-999999999-abc"  # a SIGKILLed harness's directory: no such pid
    dead.mkdir()
    (dead / "qmp.sock").write_text("")
    mine = tmp_path / f"ph-{os.getpid()}-old"
    mine.mkdir()
    other = tmp_path / "ph-bench-boot-x"  # not a socket directory: left alone
    other.mkdir()
    new = short_socket_dir(str(tmp_path))
    assert new.name.startswith(f"ph-{os.getpid()}-") and new.is_dir()
    assert not dead.exists() and mine.exists() and other.exists()
