"""Snapshot logic without a guest: what a snapshot's key covers, the argv of a snapshot guest,
the hot-plug and settle commands, pruning. The save/restore itself runs in tests/vm/test_restored_guests.py."""
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from harness.vm import cache, snapshot
from harness.vm.guest import SSHKey
from harness.vm.host import Paths
from harness.vm.image import Disk
from harness.vm.qemu import QemuConfig, build_argv


@pytest.fixture
def files(tmp_path):
    for name in ("bzImage", "initrd", "rootfs.ext4", "modules.img"):
        (tmp_path / name).write_bytes(name.encode() * 100)
    return tmp_path


def _cfg(d: Path, **kw) -> QemuConfig:
    base = dict(kernel=d / "bzImage", initrd=d / "initrd", console_log=d / "console.log", qmp_socket=d / "qmp.sock",
                append=["console=ttyS0", "pinharness.key=AAAA"], qemu_binary="true",
                disks=[Disk(d / "rootfs.ext4", "ph-rootfs", snapshot=True),
                       Disk(d / "modules.img", "ph-modules", readonly=True)])
    base.update(kw)
    return QemuConfig(**base)


def _digest(d, **kw) -> str:
    return snapshot.plan(Paths(d / "cache"), _cfg(d, **kw)).digest


def test_the_per_snapshot_ssh_key_is_not_part_of_the_key(files):
    assert _digest(files) == _digest(files, append=["console=ttyS0", "pinharness.key=BBBB"])


@pytest.mark.parametrize("change", [
    dict(append=["console=ttyS0", "vdpa_sim.use_va=0"]), dict(memory_mb=512), dict(cpus=2), dict(accel="kvm"),
    dict(iommu=True), dict(devices=("edu",)), dict(extra_args=("-global", "x=y")), dict(cpu_model="host"),
])
def test_options_set_at_boot_make_another_snapshot(files, change):
    assert _digest(files) != _digest(files, **change)


@pytest.mark.parametrize("name", ["bzImage", "initrd", "rootfs.ext4", "modules.img"])
def test_a_changed_input_file_makes_another_snapshot_never_a_stale_one(files, name):
    before = _digest(files)
    time.sleep(0.01)
    (files / name).write_bytes(b"rebuilt")
    assert _digest(files) != before


def test_a_changed_qemu_binary_makes_another_snapshot(files, monkeypatch):
    fake = files / "qemu-system-x86_64"
    fake.write_bytes(b"v1")
    monkeypatch.setattr(snapshot, "require_tool", lambda tool: str(fake))
    before = _digest(files)
    fake.write_bytes(b"version 2")
    assert _digest(files) != before


def test_snapshot_guest_argv_reserves_ports_and_vmgenid_and_waits_for_its_state(files):
    key = SSHKey.generate()
    cfg = snapshot.snapshot_config(_cfg(files), files / "root.qcow2", key, files / "c.log", incoming=True)
    argv = build_argv(cfg)
    devices = [argv[i + 1] for i, a in enumerate(argv) if a == "-device"]
    assert [d for d in devices if d.startswith("pcie-root-port")] == [
        f"pcie-root-port,id=hp{n},bus=pcie.0,chassis={n + 1}" for n in range(snapshot.HOTPLUG_PORTS)]
    assert "vmgenid,id=vmgenid0,guid=auto" in devices
    assert argv[-2:] == ["-incoming", "defer"]
    drives = [argv[i + 1] for i, a in enumerate(argv) if a == "-drive"]
    assert drives[0].startswith(f"file={files / 'root.qcow2'},") and "format=qcow2" in drives[0]
    assert "snapshot=on" not in drives[0]
    append = argv[argv.index("-append") + 1].split()
    assert append.count("pinharness.key=" + key.cmdline_value()) == 1 and "pinharness.key=AAAA" not in append


def test_the_saved_and_the_restored_guest_differ_only_in_root_file_and_incoming(files):
    key = SSHKey.generate()
    saved = build_argv(snapshot.snapshot_config(_cfg(files), files / "a.qcow2", key, files / "c", incoming=False))
    restored = build_argv(snapshot.snapshot_config(_cfg(files), files / "b.qcow2", key, files / "c", incoming=True))
    assert [a.replace("b.qcow2", "a.qcow2") for a in restored[:-2]] == saved


class FakeMachine:
    def __init__(self, hmp_reply="OK"):
        self.calls = []
        self.hmp_reply = hmp_reply

    def qmp_cmd(self, name, **args):
        self.calls.append((name, args))
        return self.hmp_reply if name == "human-monitor-command" else {}


def test_hotplug_gives_disks_the_drive_properties_of_a_cold_boot(tmp_path):
    m = FakeMachine()
    disks = [Disk(tmp_path / "scratch.img", "scratch0"),
             Disk(tmp_path / "src.img", "ph-source", readonly=True, extra={"throttling.iops-read": 40})]
    snapshot.hotplug(m, disks, first_index=2)  # type: ignore[arg-type]
    hmp = [a["command-line"] for n, a in m.calls if n == "human-monitor-command"]
    assert hmp[0].startswith(f"drive_add 0 file={tmp_path / 'scratch.img'},if=none,id=drive2,")
    assert "throttling.iops-read=40" in hmp[1] and "readonly=on" in hmp[1] and "id=drive3" in hmp[1]
    adds = [a for n, a in m.calls if n == "device_add"]
    assert adds == [dict(driver="virtio-blk-pci", id="hpdisk0", bus="hp0", drive="drive2", serial="scratch0"),
                    dict(driver="virtio-blk-pci", id="hpdisk1", bus="hp1", drive="drive3", serial="ph-source")]


def test_hotplug_adds_devices_after_the_disks():
    m = FakeMachine()
    snapshot.hotplug(m, [Disk(Path("/d.img"), "scratch0")], 2, devices=["edu,dma_mask=0xffffffff"])  # type: ignore
    assert [a for n, a in m.calls if n == "device_add"][-1] == dict(driver="edu", id="hpdev1", bus="hp1",
                                                                    dma_mask="0xffffffff")


def test_hotplug_names_qemus_refusal(tmp_path):
    from harness.errors import VMError
    with pytest.raises(VMError, match="could not attach .*x.img: Could not open"):
        snapshot.hotplug(FakeMachine("Could not open 'x.img'"), [Disk(tmp_path / "x.img", "s")], 2)  # type: ignore


def test_too_many_disks_for_the_reserved_ports():
    from harness.errors import SnapshotError
    with pytest.raises(SnapshotError, match="7 disks and 0 devices, but only 6 ports"):
        snapshot.hotplug(FakeMachine(), [Disk(Path(f"/d{i}"), f"s{i}") for i in range(7)], 2)  # type: ignore


def test_settle_command_waits_for_every_serial_then_seeds_and_sets_the_clock():
    cmd = snapshot.settle_command(["scratch0", "ph-source"], ["0x1234:0x11e8"], bytes(range(4)), 1700000000.25)
    assert "has /sys/block/vd*/serial scratch0 || ok=" in cmd and "has /sys/block/vd*/serial ph-source" in cmd
    assert "has_pci 0x1234:0x11e8 || ok=" in cmd
    assert "echo 00010203 > /dev/urandom" in cmd
    assert cmd.endswith("exec date -s @1700000000.250 >/dev/null")  # the last program replaces the shell
    assert "sleep" not in cmd and "[ -n \"$ok\" ] || exit 1;" in cmd


def test_settle_commands_wait_is_a_read_timeout_not_a_program():
    """The wait between checks (bash's `read -t` on a pipe it holds open both ways) really waits and
    starts no program; run by the host's bash on the command's own functions."""
    cmd = snapshot.settle_command([], [], b"", 0.0)
    nap = cmd[cmd.index("nap() {"):cmd.index("}; for")] + "}"
    script = f"{nap}; t=$EPOCHREALTIME; for n in 1 2 3 4; do nap; done; echo $t $EPOCHREALTIME"
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=10, check=True).stdout.split()
    assert 0.18 <= float(out[1]) - float(out[0]) < 2.0


def _fake_snapshot(root: Path, name: str, used: float) -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / "state").write_bytes(b"x")
    cache.stamp_path(d).write_text("{}")
    used_file = d.with_name(name + ".used")
    used_file.touch()
    os.utime(used_file, (used, used))
    return d


def test_prune_keeps_the_most_recently_used(tmp_path):
    now = time.time()
    dirs = [_fake_snapshot(tmp_path, f"snap{i}", now - 100 * i) for i in range(5)]
    notes = []
    snapshot.prune(tmp_path, 3, notes.append)
    assert [d.exists() for d in dirs] == [True, True, True, False, False]
    assert not cache.stamp_path(dirs[4]).exists() and not dirs[4].with_name("snap4.used").exists()
    assert len(notes) == 2 and "least recently used" in notes[0]


def test_a_configuration_qemu_cannot_save_is_not_tried_again(tmp_path, files, monkeypatch):
    p = snapshot.plan(Paths(tmp_path / "cache"), _cfg(files))

    def refuse(*a, **k):
        raise snapshot.Unsupported("QEMU cannot save this guest: State blocked by non-migratable device")

    monkeypatch.setattr(snapshot, "build", refuse)
    from harness.errors import SnapshotError
    with pytest.raises(SnapshotError, match="non-migratable"):
        snapshot.ensure(p, _cfg(files), lambda m: None, tmp_path, lambda s: None)
    monkeypatch.setattr(snapshot, "build", lambda *a, **k: pytest.fail("tried again"))
    with pytest.raises(SnapshotError, match="cannot be snapshotted .*non-migratable"):
        snapshot.ensure(p, _cfg(files), lambda m: None, tmp_path, lambda s: None)


def test_devices_whose_state_qemu_does_not_migrate_are_named(files):
    assert snapshot.unmigrated_devices(_cfg(files, devices=("edu",))) == ["edu"]
    assert snapshot.unmigrated_devices(_cfg(files, devices=("edu,addr=5",))) == ["edu,addr=5"]
    assert snapshot.unmigrated_devices(_cfg(files, devices=("virtio-rng-pci",))) == []
    assert all(re.fullmatch(r"0x[0-9a-f]{4}:0x[0-9a-f]{4}", i) for i in snapshot.NOT_MIGRATED.values())
