"""Guest snapshots: boot once, restore many.

The first guest of a (kernel, initramfs, modules disk, rootfs, QEMU, VM options) combination
boots to ready on a qcow2 overlay of the rootfs, with empty PCIe root ports reserved for
disks and a vmgenid device; then its SSH session is closed, the vCPUs stopped and its state
migrated into a file. That state, the root overlay, the SSH key and the boot console form one
cached artifact (``cache/snapshots/<digest>``, stamped by ``vm/cache.py``: never half-written,
rebuilt when its record does not match).

Every later guest of the combination restores it (``-incoming defer`` + ``migrate-incoming``
over a passed file descriptor) onto its own overlay of the saved root, gets its per-test
disks hot-plugged into the reserved ports (the same ``-drive`` properties a cold boot would
use, throttling included), a new SSH port, a fresh vmgenid (the guest reseeds its RNG),
a host-written seed and the host's clock.

The digest covers every input's path, size and mtime (the QEMU binary's too), the command line
without its per-snapshot SSH key, and the device configuration: a changed kernel, image, QEMU or
option is a different snapshot, never a stale one restored.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from harness.errors import CacheLocked, SnapshotError, VMError
from harness.vm import cache
from harness.vm.guest import Guest, SSHKey
from harness.vm.host import Paths, require_tool
from harness.vm.image import Disk
from harness.vm.qemu import Machine, QemuConfig, build_argv, drive_args

SNAPSHOT_FORMAT = 2  # bump when what a snapshot holds changes
HOTPLUG_PORTS = 6  # empty pcie-root-ports saved with the guest: at most this many per-test disks
KEEP = 16  # snapshots kept in the cache (the least recently used go first): 50-100 MiB each; the default
# matrix uses 9 (3 kernels x 3 VM configurations)
MIGRATE_TIMEOUT = 120.0
MIGRATE_BANDWIDTH = 8 << 30  # bytes/s: QEMU's default cap (32 MiB/s) would make saving take seconds
KEY_WORD = "pinharness.key="
# -device drivers whose state QEMU does not migrate (no vmstate: edu's PCI config space, BARs included,
# would come back reset), with the PCI vendor:device the guest sees: they are left out of the snapshot
# and hot-plugged after the restore, like the disks
NOT_MIGRATED = {"edu": "0x1234:0x11e8"}
STATE, ROOT, SSH_KEY, CONSOLE = "state", "root.qcow2", "ssh_key", "console.log"
VM_ROOT = "root-overlay.qcow2"  # in a restored VM's workdir: its own writes over the snapshot's root


class Unsupported(SnapshotError):
    """QEMU refuses to migrate this device configuration: snapshots of it are not tried again."""


@dataclass(frozen=True)
class Plan:
    """What a snapshot is of (``key``), and where it is kept."""

    key: dict
    digest: str
    directory: Path

    @property
    def unsupported_marker(self) -> Path:
        return self.directory.with_name(self.directory.name + ".unsupported")


def file_identity(path: Path) -> dict:
    st = os.stat(path)
    return {"path": str(Path(path).resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def plan(paths: Paths, cfg: QemuConfig) -> Plan:
    """The snapshot of the guest ``cfg`` describes (its disks are the ones present at boot).

    Its key is the snapshot guest's QEMU command line (with placeholders for the per-run paths and
    without the SSH key), so that anything the device configuration depends on is in it, plus the
    identity of every file that command line names and of the QEMU binary."""
    placeholder = dataclasses.replace(cfg, console_log=Path("CONSOLE"), qmp_socket=Path("QMP"),
                                      append=[w for w in cfg.append if not w.startswith(KEY_WORD)])
    argv = build_argv(snapshot_config(placeholder, Path("ROOT"), None, Path("CONSOLE"), incoming=False))
    key = {
        "format": SNAPSHOT_FORMAT,
        "argv": argv,
        "qemu": file_identity(Path(require_tool(cfg.qemu_binary))),
        "files": [file_identity(f) for f in (cfg.kernel, cfg.initrd, *(d.path for d in cfg.disks)) if f],
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    return Plan(key, digest, paths.sub("snapshots") / digest)


def unmigrated_devices(cfg: QemuConfig) -> list[str]:
    """The -device values of ``cfg`` whose state a snapshot would lose."""
    return [d for d in cfg.devices if d.split(",", 1)[0] in NOT_MIGRATED]


def snapshot_config(cfg: QemuConfig, root: Path, key: Optional[SSHKey], console_log: Path,
                    incoming: bool) -> QemuConfig:
    """``cfg`` as a snapshot guest: root on the qcow2 ``root``, reserved ports, vmgenid, ``key``'s SSH key."""
    disks = [dataclasses.replace(cfg.disks[0], path=root, fmt="qcow2", snapshot=False), *cfg.disks[1:]]
    append = [w for w in cfg.append if not w.startswith(KEY_WORD)]
    append += [KEY_WORD + key.cmdline_value()] if key is not None else []
    return dataclasses.replace(cfg, disks=disks, append=append, console_log=console_log,
                               hotplug_ports=HOTPLUG_PORTS, vmgenid=True, incoming=incoming)


def overlay(backing: Path, backing_fmt: str, dest: Path) -> Path:
    """A qcow2 at ``dest`` whose unwritten blocks read from ``backing``."""
    qemu_img = require_tool("qemu-img")
    res = subprocess.run([qemu_img, "create", "-q", "-f", "qcow2", "-F", backing_fmt, "-b", str(backing), str(dest)],
                         capture_output=True, text=True, timeout=60)
    if res.returncode != 0:
        raise SnapshotError(f"qemu-img could not create an overlay of {backing}: {res.stderr.strip()[-300:]}")
    return dest


# --------------------------------------------------------------------------- migration

def _pass_fd(machine: Machine, fd: int, name: str) -> None:
    machine.qmp.send_fd_scm(fd)  # type: ignore[attr-defined]
    machine.qmp_cmd("getfd", fdname=name)


def wait_migration(machine: Machine, timeout: float, what: str) -> dict:
    """Poll query-migrate until it completes; SnapshotError when it fails, QEMU dies or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        machine._raise_if_dead()
        info = machine.qmp_cmd("query-migrate")
        status = info.get("status")
        if status == "completed":
            return info
        if status in ("failed", "cancelled"):
            raise SnapshotError(f"{what} failed: {info.get('error-desc', status)}")
        if time.monotonic() > deadline:
            raise SnapshotError(f"{what} did not complete within {timeout:.0f}s (status {status})")
        time.sleep(0.02)


def save_state(machine: Machine, path: Path, timeout: float = MIGRATE_TIMEOUT) -> None:
    """Stop the guest and migrate its state into ``path``."""
    machine.qmp_cmd("stop")
    machine.qmp_cmd("migrate-set-parameters", **{"max-bandwidth": MIGRATE_BANDWIDTH})
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        _pass_fd(machine, fd, "snapshot")
    finally:
        os.close(fd)
    try:
        machine.qmp_cmd("migrate", uri="fd:snapshot")
    except Exception as exc:  # qemu.qmp's ExecuteError: e.g. "State blocked by non-migratable device"
        raise Unsupported(f"QEMU cannot save this guest: {exc}") from None
    wait_migration(machine, timeout, "saving the guest's state")


def load_state(machine: Machine, path: Path, timeout: float = MIGRATE_TIMEOUT) -> None:
    """Restore ``path`` into a QEMU started with ``-incoming defer``; the guest runs afterwards."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _pass_fd(machine, fd, "snapshot")
    finally:
        os.close(fd)
    machine.qmp_cmd("migrate-incoming", uri="fd:snapshot")
    wait_migration(machine, timeout, f"restoring {path}")
    deadline = time.monotonic() + 10
    while machine.run_state() != "running":
        if time.monotonic() > deadline:
            raise SnapshotError(f"the restored guest is {machine.run_state()!r}, not running")
        if machine.run_state() in ("paused", "postmigrate", "prelaunch"):
            machine.qmp_cmd("cont")
        time.sleep(0.02)


# --------------------------------------------------------------------------- build

@dataclass
class Saved:
    """A complete snapshot on disk."""

    directory: Path
    key: SSHKey

    @property
    def state(self) -> Path:
        return self.directory / STATE

    @property
    def root(self) -> Path:
        return self.directory / ROOT

    @property
    def console(self) -> Path:
        return self.directory / CONSOLE


def load(directory: Path) -> Saved:
    data = json.loads((directory / SSH_KEY).read_text())
    return Saved(directory, SSHKey(data["private"], data["public"]))


def build(tmp: Path, cfg: QemuConfig, ready: Callable[[Machine], None], sockdir: Path,
          log: Callable[[str], None], keep_console: Optional[Path] = None, log_channel: Optional[str] = None,
          connect_timeout: float = 60.0) -> None:
    """Boot ``cfg``'s guest to ready into a snapshot directory at ``tmp`` (see module doc)."""
    tmp.mkdir(parents=True)
    key = SSHKey.generate()
    root = overlay(cfg.disks[0].path, cfg.disks[0].fmt, tmp / ROOT)
    scfg = dataclasses.replace(snapshot_config(cfg, root, key, tmp / CONSOLE, incoming=False),
                               qmp_socket=sockdir / "snapshot-qmp.sock")
    machine = Machine(scfg, tmp, log=log)
    guest: Optional[Guest] = None
    try:
        machine.start()
        ready(machine)
        guest = Guest(machine.ssh_port, key, log_channel=log_channel)  # type: ignore[arg-type]
        guest.connect(timeout=connect_timeout, alive=machine.check)
        # what every restored guest would otherwise re-read: nothing of the template's page cache
        guest.run("sync; echo 3 > /proc/sys/vm/drop_caches", timeout=60, alive=machine.check).check()
        guest.close()
        guest = None
        save_state(machine, tmp / STATE)
    except BaseException:
        if keep_console is not None and (tmp / CONSOLE).exists():  # the failed boot's console outlives tmp
            shutil.copyfile(tmp / CONSOLE, keep_console)
        raise
    finally:
        if guest is not None:
            guest.close()
        machine.quit(timeout=3.0)
    (tmp / SSH_KEY).write_text(json.dumps({"private": key.private_openssh, "public": key.public_line}))
    os.chmod(tmp / SSH_KEY, 0o600)


def ensure(p: Plan, cfg: QemuConfig, ready: Callable[[Machine], None], sockdir: Path,
           log: Callable[[str], None], log_channel: Optional[str] = None) -> Saved:
    """The complete snapshot of ``p``, built now if missing or unusable (SnapshotError if it cannot be)."""
    if p.unsupported_marker.exists():
        raise SnapshotError(f"this guest configuration cannot be snapshotted "
                            f"({p.unsupported_marker.read_text().strip()})")
    def build_it(tmp: Path) -> None:  # only the process that builds it says so (another one waits, then reuses it)
        log(f"pinharness: saving a snapshot of this guest for later runs ({p.digest[:12]})")
        build(tmp, cfg, ready, sockdir, log, keep_console=cfg.console_log, log_channel=log_channel)

    try:
        directory = cache.atomic_artifact(p.directory, build_it, log=log)
    except Unsupported as exc:  # QEMU cannot migrate this device configuration: do not try again
        p.unsupported_marker.write_text(str(exc) + "\n")
        raise
    key_file = p.directory.with_name(p.directory.name + ".json")
    if not key_file.exists():
        key_file.write_text(json.dumps(p.key, indent=1))  # what it is a snapshot of, for people
        prune(p.directory.parent, KEEP, log)
    p.directory.with_name(p.directory.name + ".used").touch()
    return load(directory)


def prune(root: Path, keep: int, log: Callable[[str], None]) -> None:
    """Remove all but the ``keep`` most recently used snapshots under ``root``."""
    def last_used(d: Path) -> float:
        used = d.with_name(d.name + ".used")
        return (used if used.exists() else d).stat().st_mtime

    snapshots = sorted((d for d in root.iterdir() if d.is_dir() and "." not in d.name), key=last_used, reverse=True)
    for old in snapshots[keep:]:
        try:
            with cache.artifact_lock(old, timeout=1.0):
                for path in (old, cache.stamp_path(old), *[old.with_name(old.name + s) for s in
                                                             (".json", ".used", ".unsupported")]):
                    cache.remove(path)
        except CacheLocked:
            continue  # being built or removed by another process
        log(f"pinharness: removed the least recently used snapshot {old.name[:12]} (keeping {keep})")


def discard(p: Plan, why: str, log: Callable[[str], None]) -> None:
    """Remove a snapshot that failed to restore: the next use builds it again."""
    log(f"pinharness: snapshot {p.digest[:12]} did not restore ({why}); removed, it is rebuilt on next use")
    with cache.artifact_lock(p.directory, timeout=60):
        cache.remove(p.directory)
        cache.remove(cache.stamp_path(p.directory))


# --------------------------------------------------------------------------- restore

def hotplug(machine: Machine, disks: Sequence[Disk], first_index: int, devices: Sequence[str] = ()) -> None:
    """Attach ``disks`` (with the properties a cold boot would give them), then ``devices`` (-device
    values), to the reserved root ports."""
    if len(disks) + len(devices) > HOTPLUG_PORTS:
        raise SnapshotError(f"{len(disks)} disks and {len(devices)} devices, but only {HOTPLUG_PORTS} ports are reserved")
    for n, disk in enumerate(disks):
        index = first_index + n
        drive = drive_args(disk, index)[1]
        out = machine.qmp_cmd("human-monitor-command", **{"command-line": f"drive_add 0 {drive}"})
        if out.strip() != "OK":
            raise VMError(f"QEMU could not attach {disk.path}: {out.strip()[:300]}")
        machine.qmp_cmd("device_add", driver="virtio-blk-pci", id=f"hpdisk{n}", bus=f"hp{n}",
                        drive=f"drive{index}", serial=disk.serial)
    for n, device in enumerate(devices, start=len(disks)):
        driver, *props = device.split(",")
        machine.qmp_cmd("device_add", driver=driver, id=f"hpdev{n}", bus=f"hp{n}",
                        **dict(p.split("=", 1) for p in props))


def settle_command(serials: Sequence[str], pci_ids: Sequence[str], seed: bytes, now: float) -> str:
    """One guest command: wait (10 s at most) until the hot-plugged disks (by serial) and devices (by PCI
    vendor:device) are there, then take the host's seed and clock. Under TCG every program bash starts
    costs ~0.1 s after a restore, so it waits with `read -t` on a pipe of its own (no `sleep`) and
    `date` replaces the shell instead of being forked from it."""
    checks = [f"has /sys/block/vd*/serial {s}" for s in serials]
    checks += [f"has_pci {i}" for i in pci_ids]
    return ("has() { local want=${@: -1} f x; for f in \"${@:1:$#-1}\"; do read -r x < $f 2>/dev/null; "
            "[ \"$x\" = $want ] && return 0; done; return 1; }; "
            "has_pci() { local d v p; for d in /sys/bus/pci/devices/*; do read -r v < $d/vendor; read -r p < $d/device; "
            "[ $v:$p = $1 ] && return 0; done; return 1; }; "
            "nap() { [ -n \"$napfd\" ] || exec {napfd}<> <(:); read -rt 0.05 -u $napfd; }; "
            f"for ((i = 0; i < 200; i++)); do ok=1; {'; '.join(f'{c} || ok=' for c in checks) or ':'}; "
            "[ -n \"$ok\" ] && break; nap; done; "
            f"[ -n \"$ok\" ] || exit 1; echo {seed.hex()} > /dev/urandom; exec date -s @{now:.3f} >/dev/null")


def settle(guest: Guest, machine: Machine, disks: Sequence[Disk], devices: Sequence[str] = (),
           timeout: float = 30.0) -> None:
    pci_ids = [NOT_MIGRATED[d.split(",", 1)[0]] for d in devices if d.split(",", 1)[0] in NOT_MIGRATED]
    cmd = settle_command([d.serial for d in disks], pci_ids, secrets.token_bytes(64), time.time())
    res = guest.run(cmd, timeout=timeout, alive=machine.check)
    if res.exit_status != 0:
        raise VMError(f"the restored guest did not see what was hot-plugged into it within 10s: "
                      f"{', '.join([d.serial for d in disks] + list(devices))}")


def copy_boot_console(saved: Saved, console_log: Path) -> None:
    """Start the VM's console log with the snapshot's boot, then a line saying where the restore begins."""
    with open(console_log, "ab") as out:
        if saved.console.exists():
            with open(saved.console, "rb") as src:
                shutil.copyfileobj(src, out)
        out.write(f"\r\n[pinharness: restored from snapshot {saved.directory.name}]\r\n".encode())
