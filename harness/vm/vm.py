"""A booted guest: kernel + guest image + disks → QEMU → ready marker → SSH.

    with VM(kernel, image, paths, workdir, VMOptions(accel="tcg")) as vm:
        vm.run("uname -r")

The console log, QEMU argv, dmesg and a vm.json summary are written into
``workdir`` on every path, failures included.
"""
from __future__ import annotations

import json
import re
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional, Sequence

from harness.errors import (CommandKilled, CommandTimeout, QemuDied, SnapshotError, SSHStall, VMError,
                            named_enospc)
from harness.vm import arch as arch_mod
from harness.vm import pvh, snapshot
from harness.vm.diagnose import RUN_STATES, killed_message, stall_error
from harness.vm.guest import CommandResult, Guest, SSHKey, SSHLog
from harness.vm.host import Paths
from harness.vm.image import (MODULES_SERIAL, ROOT_SERIAL, Disk, GuestImage, build_initramfs, build_modules_disk)
from harness.vm import kernel_image
from harness.vm.kernel import Kernel
from harness.vm.qemu import AccelChoice, Machine, QemuConfig, choose_accel, short_socket_dir

READY_MARKER = r"PINHARNESS-READY"


def disk_by_serial_shell(serial: str) -> str:
    """A shell snippet printing /dev/vdX of the virtio disk with this serial."""
    return ('for d in /sys/block/vd*; do [ "$(cat $d/serial 2>/dev/null)" = ' + serial
            + ' ] && echo /dev/${d##*/}; done')
CANARY_MARKER = r"PINHARNESS-CANARY-OK"
OOM_CONSOLE_WAIT = 3.0  # after a SIGKILL, how long the serial console may lag behind with the OOM report
DMESG_TIMEOUT = 5.0  # collecting dmesg while closing a guest that still answers
QUIT_TIMEOUT = 3.0  # QMP quit, then SIGKILL: closing a hung guest stays under 5 s


@dataclass
class VMOptions:
    memory_mb: int = 1024
    cpus: int = 1
    accel: str = "auto"  # auto | kvm | tcg
    boot_timeout: float = 180.0
    silence_timeout: float = 90.0  # no console output for this long during boot = hang
    cmdline: Sequence[str] = ()  # extra kernel command-line words
    iommu: bool = False
    nested: bool = False  # the guest runs KVM (arm64: QEMU gives it EL2)
    devices: Sequence[str] = ()  # extra -device values
    cpu_model: Optional[str] = None
    extra_qemu_args: Sequence[str] = ()
    pvh: bool = True  # boot the bzImage's uncompressed vmlinux through PVH (no decompression under TCG)
    snapshot: bool = True  # restore a saved guest (saved on first use) instead of booting; see vm/snapshot.py


def boot_image(kernel: Kernel, paths: Paths, options: VMOptions) -> Path:
    """What QEMU's -kernel gets: the PVH vmlinux when there is one (and wanted), else the image."""
    use_pvh = options.pvh and arch_mod.get(kernel.arch).pvh
    return (pvh.pvh_vmlinux(kernel.image, paths) if use_pvh else None) or kernel.image


def kernel_cmdline(options: VMOptions, key: Optional[SSHKey], modules: bool, canary: bool = False,
                   arch: arch_mod.Arch = arch_mod.ARCHES[arch_mod.DEFAULT]) -> list[str]:
    # cryptomgr.notests: the crypto self-tests take seconds of a contended TCG boot and test nothing pins touch
    words = [f"console={arch.console},115200", "loglevel=7", "panic=-1", "net.ifnames=0", *arch.cmdline,
             "cryptomgr.notests", f"pinharness.root={ROOT_SERIAL}"]
    if modules:
        words.append(f"pinharness.modules={MODULES_SERIAL}")
    if key is not None:
        words.append(f"pinharness.key={key.cmdline_value()}")
    if canary:
        words.append("pinharness.canary=1")
    if options.iommu:
        words += arch.iommu_cmdline
    words += list(options.cmdline)
    return words


# A working KVM prints the kernel banner well under a second after start and
# reaches the initramfs in a few; a broken one (e.g. a PVM backend) stays silent.
CANARY_TIMEOUT = 15.0
CANARY_SILENCE = 6.0


def canary_boot(kernel: Kernel, paths: Paths, workdir: Path, accel: str = "kvm", timeout: float = CANARY_TIMEOUT,
                silence: float = CANARY_SILENCE, cpu_model: Optional[str] = None,
                options: Optional[VMOptions] = None) -> float:
    """Boot ``kernel`` with the initramfs only, under ``accel``, to a userspace marker.
    Returns the seconds it took; raises the VMError that stopped it."""
    kernel_image.kind(kernel.image, kernel.arch)
    initrd = build_initramfs(kernel, paths)
    workdir.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    sockdir = short_socket_dir()
    try:
        cfg = QemuConfig(kernel=boot_image(kernel, paths, options or VMOptions()), initrd=initrd,
                         append=kernel_cmdline(VMOptions(), None, False, canary=True, arch=arch_mod.get(kernel.arch)),
                         console_log=workdir / "console.log", qmp_socket=sockdir / "qmp.sock", memory_mb=512,
                         accel=accel, ssh_forward=False, cpu_model=cpu_model, arch=arch_mod.get(kernel.arch))
        with Machine(cfg, workdir, log=lambda s: None) as m:
            m.start()
            m.wait_for(CANARY_MARKER, timeout, f"the {accel} canary boot", silence_timeout=silence)
    finally:
        shutil.rmtree(sockdir, ignore_errors=True)  # a failed canary leaves no ph-* directory in $TMPDIR
    return time.monotonic() - t0


def pick_accel(requested: str, kernel: Kernel, paths: Paths, workdir: Path, log: Callable[[str], None] = print
               ) -> AccelChoice:
    host = arch_mod.host()
    if host is None or host.name != kernel.arch:  # KVM runs only the host's own architecture
        if requested == "kvm":
            raise VMError(f"--accel kvm cannot run a {kernel.arch} guest on this "
                          f"{host.name if host else 'unknown'} host: use --accel auto or tcg")
        return AccelChoice("tcg", f"{kernel.arch} guest: KVM runs only the host's architecture")
    cached = failed_canary(paths) if requested == "auto" else None
    if cached is not None:  # a KVM that failed its canary since this host booted fails it again: no 6 s wait
        log(f"pinharness: warning: KVM not used, falling back to TCG ({cached}; found earlier since this host "
            f"booted: --accel kvm probes again)")
        return AccelChoice("tcg", cached)
    choice = choose_accel(requested, lambda: canary_boot(kernel, paths, workdir / "kvm-canary", "kvm"), log)
    if choice.accel == "tcg" and choice.reason.startswith(CANARY_FAILED) and paths is not None:
        _canary_file(paths).write_text(json.dumps({"key": _kvm_key(), "problem": choice.reason}))
    return choice


CANARY_FAILED = "KVM canary boot failed"


def _canary_file(paths: Paths) -> Path:
    return paths.sub("accel") / "kvm-canary.json"


def _kvm_key() -> dict:
    """What a canary verdict holds for: this boot of the host, this /dev/kvm, this QEMU."""
    import os

    from harness.vm.host import which

    def ident(path: Optional[str]) -> list:
        try:
            st = os.stat(path) if path else None
        except OSError:
            st = None
        return [path, st.st_rdev or st.st_size, st.st_mtime_ns] if st else [path]

    try:
        boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        boot_id = ""
    qemu = which((arch_mod.host() or arch_mod.ARCHES[arch_mod.DEFAULT]).qemu_binary)
    return {"boot_id": boot_id, "kvm": ident("/dev/kvm"), "qemu": ident(qemu)}


def failed_canary(paths: Optional[Paths]) -> Optional[str]:
    """Why KVM failed its canary boot earlier since this host booted (same /dev/kvm and QEMU), if it did."""
    if paths is None:
        return None
    try:
        data = json.loads(_canary_file(paths).read_text())
    except (OSError, ValueError):
        return None
    if data.get("key") != _kvm_key() or not str(data.get("problem", "")).startswith(CANARY_FAILED):
        return None
    return data["problem"]


@dataclass
class VM:
    kernel: Kernel
    image: GuestImage
    paths: Paths
    workdir: Path
    options: VMOptions = field(default_factory=VMOptions)
    disks: Sequence[Disk] = ()
    accel: Optional[AccelChoice] = None  # decided once per session by pick_accel
    log: Callable[[str], None] = print

    machine: Optional[Machine] = field(default=None, init=False)
    guest: Optional[Guest] = field(default=None, init=False)
    boot_seconds: float = field(default=0.0, init=False)
    outcome: str = field(default="not booted", init=False)
    snapshot: Optional[str] = field(default=None, init=False)  # the digest of the snapshot restored, if one was
    _sockdir: Optional[Path] = field(default=None, init=False)
    _ssh_log: Optional[SSHLog] = field(default=None, init=False)

    # ------------------------------------------------------------------ lifecycle
    def boot(self) -> "VM":
        """Restore the guest from its snapshot (saving one first, on first use), or boot it afresh
        when snapshots are off (``VMOptions.snapshot``) or cannot serve it."""
        kernel_image.kind(self.kernel.image, self.kernel.arch)  # a truncated or foreign image is named here
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.accel is None:
            self.accel = pick_accel(self.options.accel, self.kernel, self.paths, self.workdir, self.log)
        initrd = build_initramfs(self.kernel, self.paths, log=self.log)
        modules_disk = build_modules_disk(self.kernel, self.paths, log=self.log)
        disks = [Disk(self.image.rootfs, ROOT_SERIAL, fs="ext4", snapshot=True)]
        if modules_disk is not None:
            disks.append(Disk(modules_disk, MODULES_SERIAL, fs="ext4", readonly=True))
        key = SSHKey.generate()
        self._sockdir = short_socket_dir()
        arch = arch_mod.get(self.kernel.arch)
        cfg = QemuConfig(kernel=boot_image(self.kernel, self.paths, self.options), initrd=initrd, arch=arch,
                         append=kernel_cmdline(self.options, key, modules_disk is not None, arch=arch),
                         console_log=self.workdir / "console.log", qmp_socket=self._sockdir / "qmp.sock",
                         memory_mb=self.options.memory_mb, cpus=self.options.cpus, accel=self.accel.accel,
                         cpu_model=self.options.cpu_model, disks=disks, iommu=self.options.iommu, nested=self.options.nested,
                         devices=self.options.devices, extra_args=self.options.extra_qemu_args)
        t0 = time.monotonic()
        try:
            # a restored guest's RNG is reseeded through vmgenid, which QEMU gives only ACPI guests (not arm64's
            # firmware-less virt): there every guest boots afresh
            if not (self.options.snapshot and arch.vmgenid and self._restore(cfg)):
                self.machine = Machine(replace(cfg, disks=[*disks, *self.disks]), self.workdir, log=self.log)
                self.machine.start()
                self._wait_ready(self.machine)
                self._connect(key)
        except BaseException as exc:
            self.outcome = f"boot failed: {type(exc).__name__}: {exc}"
            self.close()
            raise
        self.boot_seconds = time.monotonic() - t0
        self.outcome = "running"
        with named_enospc(self.workdir, "vm.json"):
            self._write_summary()
        return self

    def _wait_ready(self, machine: Machine) -> None:
        machine.wait_for(READY_MARKER, self.options.boot_timeout, "the guest to boot",
                         silence_timeout=self.options.silence_timeout)

    def _connect(self, key: SSHKey) -> None:
        assert self.machine is not None
        if self._ssh_log is None:
            self._ssh_log = SSHLog(self.workdir / "ssh.log", f"paramiko.pinharness.{id(self):x}")
        self.guest = Guest(self.machine.ssh_port, key, log_channel=self._ssh_log.channel)  # type: ignore[arg-type]
        self.guest.connect(timeout=60, alive=self.machine.check)

    def _restore(self, cfg: QemuConfig) -> bool:
        """Restore ``cfg``'s guest from its snapshot, with this VM's disks and the devices whose state QEMU
        does not migrate hot-plugged. False when snapshots cannot serve it (too many disks, a configuration
        QEMU cannot save, a snapshot that did not restore: that one is removed), after a one-line note; the
        caller then boots afresh."""
        late = snapshot.unmigrated_devices(cfg)  # not in the snapshot: hot-plugged after the restore
        if len(self.disks) + len(late) > snapshot.HOTPLUG_PORTS:
            self.log(f"pinharness: note: {len(self.disks)} disks and {len(late)} devices, more than a snapshot's "
                     f"{snapshot.HOTPLUG_PORTS} ports: booting afresh")
            return False
        cfg = replace(cfg, devices=[d for d in cfg.devices if d not in late])
        plan = snapshot.plan(self.paths, cfg)
        assert self._sockdir is not None
        self._ssh_log = SSHLog(self.workdir / "ssh.log", f"paramiko.pinharness.{id(self):x}")
        try:
            saved = snapshot.ensure(plan, cfg, self._wait_ready, self._sockdir, self.log, self._ssh_log.channel)
        except SnapshotError as exc:
            self.log(f"pinharness: note: booting afresh: {exc}")
            return False
        root = snapshot.overlay(saved.root, "qcow2", self.workdir / snapshot.VM_ROOT)
        snapshot.copy_boot_console(saved, cfg.console_log)
        self.machine = Machine(snapshot.snapshot_config(cfg, root, saved.key, cfg.console_log, incoming=True),
                               self.workdir, log=self.log)
        try:
            self.machine.start()
            snapshot.load_state(self.machine, saved.state)
        except (SnapshotError, QemuDied) as exc:
            self.machine.close(grace=0.0, term_grace=1.0)
            self.machine = None
            snapshot.discard(plan, str(exc), self.log)
            return False
        snapshot.hotplug(self.machine, self.disks, first_index=len(cfg.disks), devices=late)
        self._connect(saved.key)
        assert self.guest is not None
        snapshot.settle(self.guest, self.machine, self.disks, late)
        self.snapshot = plan.digest
        return True

    def __enter__(self) -> "VM":
        return self.boot() if self.machine is None else self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is not None and self.outcome == "running":
            self.outcome = f"error: {type(exc).__name__}: {exc}"
        self.close()

    def close(self, collect_dmesg: bool = True) -> None:
        """Save dmesg (when the guest still answers), stop QEMU, reap it. Idempotent."""
        if self.machine is None:
            self._remove_sockdir()
            return
        if collect_dmesg and self.guest is not None and self.outcome != "hang" and self.machine.alive():
            try:
                res = self.guest.run("dmesg", timeout=DMESG_TIMEOUT, alive=self.machine.check)
                (self.workdir / "dmesg.txt").write_text(res.stdout)
            except VMError:
                pass
        if self.guest is not None:
            self.guest.close()
        if self._ssh_log is not None:
            self._ssh_log.close()
            self._ssh_log = None
        self.machine.quit(timeout=QUIT_TIMEOUT)
        if self.outcome == "running":
            self.outcome = "stopped"
        try:
            self._write_summary()
        except OSError as exc:  # closing must not hide the error that got us here
            self.log(f"pinharness: warning: could not write {self.workdir / 'vm.json'}: {exc.strerror}")
        self._remove_sockdir()
        (self.workdir / snapshot.VM_ROOT).unlink(missing_ok=True)  # this guest's writes to its root: scrap
        self.machine_exit = self.machine.exit_status
        self.guest = None

    def _remove_sockdir(self) -> None:
        if self._sockdir is not None:
            shutil.rmtree(self._sockdir, ignore_errors=True)  # no ph-* directory left in $TMPDIR
            self._sockdir = None

    def _write_summary(self) -> None:
        summary = {"kernel": self.kernel.describe(), "accel": asdict(self.accel) if self.accel else None,
                   "options": {k: (list(v) if isinstance(v, (list, tuple)) else v)
                               for k, v in asdict(self.options).items()},
                   "disks": [{"path": str(d.path), "serial": d.serial, "fs": d.fs} for d in self.disks],
                   "boot_seconds": round(self.boot_seconds, 2), "snapshot": self.snapshot, "outcome": self.outcome}
        (self.workdir / "vm.json").write_text(json.dumps(summary, indent=1))

    # ------------------------------------------------------------------ using the guest
    def _require(self) -> tuple[Machine, Guest]:
        if self.machine is None or self.guest is None:
            raise VMError("the VM is not running")
        return self.machine, self.guest

    def run(self, command: str, timeout: float = 60.0, check: bool = False,
            stdin: Optional[bytes] = None) -> CommandResult:
        """Run a shell command in the guest. A command that outlives ``timeout``
        raises CommandTimeout if the guest still answers, GuestHang if not; a
        guest that died raises its cause (GuestPanic, QemuDied...)."""
        machine, guest = self._require()
        start = self.console_len()
        try:
            res = guest.run(command, timeout=timeout, alive=machine.check, stdin=stdin)
        except CommandKilled as exc:  # the connection is fine: say why, with the OOM kill when it is one
            console = self._console_after_kill(start, exc.signal)
            raise CommandKilled(killed_message(str(exc), console), signal=exc.signal) from None
        except SSHStall as exc:
            self.outcome = "hang"
            raise stall_error(str(exc), machine.run_state(), machine.console_silence(),
                              machine.last_lines()) from None
        except CommandTimeout as exc:
            if machine.run_state() in RUN_STATES or not self.responsive():  # a paused guest needs no probe
                self.outcome = "hang"
                raise stall_error(f"guest stopped answering: {exc}", machine.run_state(),
                                  machine.console_silence(), machine.last_lines()) from None
            raise
        except VMError:
            self._settle(machine)  # a named cause (panic, QEMU death) wins over the SSH symptom
            raise
        return res.check() if check else res

    def _console_after_kill(self, start: int, signal: str) -> str:
        """Console text since ``start``; after a SIGKILL, wait (bounded) for the OOM killer's line,
        which the serial console may print after SSH has reported the kill."""
        deadline = time.monotonic() + (OOM_CONSOLE_WAIT if signal == "SIGKILL" else 0.0)
        while True:
            text = self.console_text(start)
            if "Killed process" in text or time.monotonic() >= deadline or self.machine is None \
                    or self.machine.console is None:
                return text
            self.machine.console.wait_change(len(self.machine.console), 0.2)

    def _settle(self, machine: Machine, timeout: float = 10.0) -> None:
        """After a lost SSH connection, give a dying guest a moment to show why."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            machine.check()
            if machine.fatal_console_error() is not None:
                raise machine.fatal_console_error()  # type: ignore[misc]
            time.sleep(0.2)

    def responsive(self, timeout: float = 10.0) -> bool:
        """Does the guest still answer a fresh SSH session within ``timeout``?"""
        machine, guest = self._require()
        probe = Guest(guest.port, guest.key, log_channel=guest.log_channel)
        try:
            probe.connect(timeout=timeout, alive=machine.check)
            probe.run("true", timeout=timeout, alive=machine.check)
            return True
        except (VMError, CommandTimeout):
            return False
        finally:
            probe.close()

    def disk(self, serial: str) -> str:
        """The guest device (/dev/vdX) of the disk attached with ``serial``."""
        dev = self.run(disk_by_serial_shell(serial), timeout=30).stdout.strip()
        if not dev:
            raise VMError(f"no disk with serial {serial!r} in the guest")
        return dev

    def put(self, local: Path, remote: str, mode: Optional[int] = None) -> None:
        self._require()[1].put(local, remote, mode)

    def get(self, remote: str, local: Path) -> Path:
        return self._require()[1].get(remote, local)

    def mark(self, text: str, timeout: float = 15.0) -> int:
        """Write ``pinharness: <text>`` into the kernel log and wait for it on the
        console; returns the console offset where it appeared."""
        machine, guest = self._require()
        before = len(machine.console)  # type: ignore[arg-type]
        guest.run(guest.mark_command(text), timeout=timeout, alive=machine.check).check()
        m = machine.wait_for(re.escape("pinharness: " + text), timeout, f"kmsg marker {text!r}", start=before)
        return before + m.start()

    def console_text(self, start: int = 0) -> str:
        if self.machine is None or self.machine.console is None:
            path = self.workdir / "console.log"
            return path.read_text(errors="replace") if path.exists() else ""
        return self.machine.console.text(start)

    def console_len(self) -> int:
        return len(self.machine.console) if self.machine and self.machine.console else 0

    def poweroff(self, timeout: float = 30.0) -> None:
        """sync, unmount scratch file systems and power off; QEMU exits."""
        machine, guest = self._require()
        try:
            guest.run("sync; umount -a -t ext4,xfs 2>/dev/null; echo o > /proc/sysrq-trigger &", timeout=10,
                      alive=lambda: None)
        except VMError:
            pass
        deadline = time.monotonic() + timeout
        while machine.alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        self.outcome = "powered off"
        self.close(collect_dmesg=False)
