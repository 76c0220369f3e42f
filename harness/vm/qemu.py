"""QEMU lifecycle: argv built as a list, the process under a pty (pexpect), the
serial console drained into a log, QMP on a per-VM unix socket, and the
accelerator choice (KVM only after a canary boot proves it works).

Every wait has a timeout; ``Machine.close()`` kills and reaps QEMU on every
path (it is also the context-manager exit), and QEMU gets SIGKILL if the
Python process dies (PR_SET_PDEATHSIG) or SIGHUP when its pty closes.
"""
from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import pexpect

from harness.vm.arch import ARCHES, Arch
from harness.errors import (BootTimeout, EmulationFailure, GuestHang, GuestPanic, QemuDied, VMError, named_enospc)
from harness.vm.host import require_tool
from harness.vm.image import Disk

PR_SET_PDEATHSIG = 1

# Console lines that end a wait early, with the error they turn into: data, not if-chains.
FATAL_CONSOLE_PATTERNS: list[tuple[re.Pattern, type, str]] = [
    (re.compile(rb"Kernel panic - not syncing: ?([^\r\n]*)"), GuestPanic, "kernel panic: {0}"),
    (re.compile(rb"KVM internal error\. Suberror: ?(\d+)"), EmulationFailure,
     "KVM internal error (suberror {0}): QEMU paused the guest"),
    (re.compile(rb"emulation failure"), EmulationFailure, "KVM emulation failure: QEMU paused the guest"),
    (re.compile(rb"PINHARNESS-INIT-FAILED: ?([^\r\n]*)"), BootTimeout, "guest init failed: {0}"),
]
# QMP run states that mean the guest will make no more progress.
DEAD_RUN_STATES = {
    "internal-error": (EmulationFailure, "QEMU stopped the guest: internal-error (emulation failure)"),
    "guest-panicked": (GuestPanic, "guest panicked (QMP run state guest-panicked)"),
    "io-error": (VMError, "QEMU paused the guest on a disk I/O error"),
    "shutdown": (QemuDied, "guest shut down"),
}


@dataclass
class QemuConfig:
    """Everything that goes on QEMU's command line."""

    kernel: Path
    append: Sequence[str]
    console_log: Path
    qmp_socket: Path
    initrd: Optional[Path] = None
    memory_mb: int = 1024
    cpus: int = 1
    accel: str = "tcg"  # kvm | tcg
    cpu_model: Optional[str] = None  # default: host under KVM, the arch's TCG model (max...) under TCG
    arch: Arch = ARCHES["x86_64"]  # machine, IOMMU, hotplug and vmgenid details (harness.vm.arch)
    disks: Sequence[Disk] = ()
    ssh_forward: bool = True  # forward a free 127.0.0.1 port to guest :22
    iommu: bool = False  # intel-iommu, or the arch's IOMMU machine property (SMMUv3)
    nested: bool = False  # the guest runs KVM: the arch's nested_machine property (arm64: EL2)
    devices: Sequence[str] = ()  # extra -device values, e.g. "edu"
    extra_args: Sequence[str] = ()
    hotplug_ports: int = 0  # empty pcie-root-ports hp0.. for disks attached later (snapshots)
    vmgenid: bool = False  # a VM generation ID device: a restored guest sees a new one and reseeds its RNG
    incoming: bool = False  # -incoming defer: the guest's state arrives by QMP migrate-incoming
    qemu_binary: str = ""  # default: the arch's (qemu-system-x86_64, qemu-system-aarch64)

    def __post_init__(self) -> None:
        if not self.qemu_binary:
            self.qemu_binary = self.arch.qemu_binary


def _esc(value: str) -> str:
    """Escape a value for QEMU's comma-separated option syntax."""
    return str(value).replace(",", ",,")


def drive_args(disk: Disk, index: int) -> list[str]:
    props = {"file": _esc(str(disk.path)), "if": "none", "id": f"drive{index}", "format": disk.fmt,
             "cache": "unsafe" if disk.snapshot or disk.readonly else "writeback"}
    if disk.snapshot:
        props["snapshot"] = "on"
    if disk.readonly:
        props["readonly"] = "on"
    props.update({k: _esc(str(v)) for k, v in disk.extra.items()})
    drive = ",".join(f"{k}={v}" for k, v in props.items())
    device = f"virtio-blk-pci,drive=drive{index},serial={_esc(disk.serial)}"
    return ["-drive", drive, "-device", device]


def build_argv(cfg: QemuConfig) -> list[str]:
    """The QEMU command line as a list (never a shell string)."""
    cpu = cfg.cpu_model or ("host" if cfg.accel == "kvm" else cfg.arch.tcg_cpu)
    machine = cfg.arch.machine + (f",{cfg.arch.iommu_machine}" if cfg.iommu and cfg.arch.iommu_machine else "")
    machine += f",{cfg.arch.nested_machine}" if cfg.nested and cfg.arch.nested_machine else ""
    argv = [cfg.qemu_binary, "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-machine", machine, "-accel", cfg.accel, "-cpu", cpu,
            "-m", f"{cfg.memory_mb}M", "-smp", str(cfg.cpus),
            "-kernel", str(cfg.kernel), "-append", " ".join(cfg.append),
            "-chardev", "stdio,id=ser0,signal=off", "-serial", "chardev:ser0",
            "-qmp", f"unix:{_esc(str(cfg.qmp_socket))},server=on,wait=off"]
    if cfg.initrd is not None:
        argv += ["-initrd", str(cfg.initrd)]
    if cfg.iommu and cfg.arch.iommu_device:
        argv += ["-device", cfg.arch.iommu_device]
    for i, disk in enumerate(cfg.disks):
        argv += drive_args(disk, i)
    if cfg.ssh_forward:
        argv += ["-netdev", "user,id=net0,hostfwd=tcp:127.0.0.1:0-:22", "-device", "virtio-net-pci,netdev=net0"]
    for dev in cfg.devices:
        argv += ["-device", dev]
    if cfg.hotplug_ports:  # native PCIe hotplug: a slot each, probed in parallel (ACPI's handler is serial,
        # so a throttled disk's partition scan would hold up the disks plugged after it)
        for value in cfg.arch.hotplug_globals:
            argv += ["-global", value]
    for n in range(cfg.hotplug_ports):
        argv += ["-device", f"pcie-root-port,id=hp{n},bus=pcie.0,chassis={n + 1}"]
    if cfg.vmgenid and cfg.arch.vmgenid:
        argv += ["-device", "vmgenid,id=vmgenid0,guid=auto"]
    argv += list(cfg.extra_args)
    if cfg.incoming:
        argv += ["-incoming", "defer"]
    return argv


def _set_pdeathsig() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class ConsoleStream:
    """Drains the QEMU pty in a thread into a log file and an in-memory buffer
    that waiters search; reading never stops, so the guest never blocks on its
    serial port."""

    def __init__(self, child: pexpect.spawn, log_path: Path):
        self._child = child
        self._log = open(log_path, "ab", buffering=0)
        self._buf = bytearray()
        self._cond = threading.Condition()
        self.eof = False
        self.log_error: Optional[str] = None  # why console.log stopped being written, if it did
        self.last_output = time.monotonic()
        self._thread = threading.Thread(target=self._drain, name="qemu-console", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while True:
            try:
                data = self._child.read_nonblocking(65536, timeout=0.2)
            except pexpect.TIMEOUT:
                continue
            except (pexpect.EOF, pexpect.ExceptionPexpect, OSError, ValueError):
                # EOF; or QEMU was reaped elsewhere (stop() waits for it) while we read: the console is over
                break
            if not data:
                continue
            self._write_log(data)
            with self._cond:
                self._buf += data
                self.last_output = time.monotonic()
                self._cond.notify_all()
        with self._cond:
            self.eof = True
            self._cond.notify_all()

    def _write_log(self, data: bytes) -> None:
        """Append to console.log; a full disk (or any write error) stops the file, never the drain."""
        if self.log_error is not None:
            return
        try:
            self._log.write(data)
        except OSError as exc:
            self.log_error = f"{self._log.name}: {exc.strerror}"

    def __len__(self) -> int:
        with self._cond:
            return len(self._buf)

    def data(self, start: int = 0) -> bytes:
        with self._cond:
            return bytes(self._buf[start:])

    def text(self, start: int = 0) -> str:
        return self.data(start).decode("utf-8", errors="replace").replace("\r\n", "\n")

    def wait_change(self, seen_len: int, timeout: float) -> None:
        with self._cond:
            if len(self._buf) == seen_len and not self.eof:
                self._cond.wait(timeout)

    def close(self, timeout: float = 5) -> None:
        self._thread.join(timeout)
        try:
            self._log.close()
        except OSError as exc:
            self.log_error = self.log_error or f"{self._log.name}: {exc.strerror}"


@dataclass
class Machine:
    """One QEMU process. Use as a context manager; close() always reaps it."""

    config: QemuConfig
    workdir: Path
    log: Callable[[str], None] = print
    child: Optional[pexpect.spawn] = field(default=None, init=False)
    console: Optional[ConsoleStream] = field(default=None, init=False)
    qmp: object = field(default=None, init=False)
    ssh_port: Optional[int] = field(default=None, init=False)
    exit_status: Optional[int] = field(default=None, init=False)
    started: float = field(default=0.0, init=False)

    def start(self, qmp_timeout: float = 15.0) -> "Machine":
        binary = require_tool(self.config.qemu_binary)
        argv = build_argv(self.config)
        argv[0] = binary
        with named_enospc(self.workdir, "the VM's artifacts"):
            self.workdir.mkdir(parents=True, exist_ok=True)
            (self.workdir / "qemu-argv.json").write_text(json.dumps(argv, indent=1))
        self.started = time.monotonic()
        self.child = pexpect.spawn(argv[0], argv[1:], echo=False, timeout=None, preexec_fn=_set_pdeathsig,
                                   dimensions=(50, 200))
        self.console = ConsoleStream(self.child, self.config.console_log)
        try:
            self._connect_qmp(qmp_timeout)
            if self.config.ssh_forward:
                self.ssh_port = self._forwarded_port()
        except BaseException:
            self.close()
            raise
        return self

    # ------------------------------------------------------------------ QMP
    def _connect_qmp(self, timeout: float) -> None:
        from qemu.qmp.legacy import QEMUMonitorProtocol

        deadline = time.monotonic() + timeout
        while True:
            self._raise_if_dead()
            if self.config.qmp_socket.exists():
                qmp = QEMUMonitorProtocol(str(self.config.qmp_socket))
                try:
                    qmp.connect()
                    qmp.settimeout(10)
                    self.qmp = qmp
                    return
                except (OSError, EOFError, Exception):  # qemu.qmp raises its own ConnectError
                    qmp.close()
            if time.monotonic() > deadline:
                raise QemuDied(f"QEMU's QMP socket did not answer within {timeout:.0f}s; see {self.workdir}")
            time.sleep(0.05)

    def qmp_cmd(self, name: str, **args):
        if self.qmp is None:
            raise QemuDied("no QMP connection")
        return self.qmp.cmd(name, **args)  # type: ignore[attr-defined]

    def _forwarded_port(self) -> int:
        out = self.qmp_cmd("human-monitor-command", **{"command-line": "info usernet"})
        m = re.search(r"HOST_FORWARD\]\s+\d+\s+127\.0\.0\.1\s+(\d+)\s+10\.0\.2\.15\s+22", out)
        if not m:
            raise QemuDied(f"could not find the SSH forward in `info usernet`: {out.strip()[:200]}")
        return int(m.group(1))

    def run_state(self) -> Optional[str]:
        if self.qmp is None or not self.alive():
            return None
        try:
            return self.qmp_cmd("query-status")["status"]
        except Exception:
            return None

    # ------------------------------------------------------------------ liveness
    def alive(self) -> bool:
        if self.child is None:
            return False
        try:
            return self.child.isalive()
        except (pexpect.ExceptionPexpect, ChildProcessError):  # the console thread's isalive() reaped it first
            return False

    def _raise_if_dead(self) -> None:
        """Raise the named cause if QEMU died or the guest can make no progress."""
        assert self.child is not None and self.console is not None
        fatal = self.fatal_console_error()
        if not self.alive():
            self.exit_status = self.child.exitstatus if self.child.exitstatus is not None else self.child.signalstatus
            if fatal is not None:
                raise fatal
            raise QemuDied(f"QEMU exited (status {self.exit_status}); last console line: {self.last_line()!r}")
        if fatal is not None and isinstance(fatal, EmulationFailure):
            raise fatal

    def check(self) -> None:
        """Public liveness check: QEMU alive, run state sane, no fatal console line."""
        self._raise_if_dead()
        state = self.run_state()
        if state in DEAD_RUN_STATES:
            cls, msg = DEAD_RUN_STATES[state]
            raise cls(msg)

    def fatal_console_error(self, start: int = 0) -> Optional[VMError]:
        data = self.console.data(start) if self.console else b""
        for rx, cls, fmt in FATAL_CONSOLE_PATTERNS:
            m = rx.search(data)
            if m:
                groups = [g.decode(errors="replace").strip() for g in m.groups()]
                return cls(fmt.format(*groups) if groups else fmt)
        return None

    def last_line(self) -> str:
        lines = self.last_lines(1)
        return lines[-1] if lines else ""

    def last_lines(self, n: int = 3) -> list[str]:
        text = self.console.text(max(0, len(self.console) - 4096)) if self.console else ""
        return [ln.strip() for ln in text.splitlines() if ln.strip()][-n:]

    def console_silence(self) -> float:
        """Seconds since the console last printed anything."""
        return time.monotonic() - self.console.last_output if self.console else 0.0

    def wait_for(self, pattern: str, timeout: float, what: str, start: int = 0,
                 silence_timeout: Optional[float] = None, poll: float = 0.5) -> re.Match:
        """Wait until ``pattern`` appears on the console after ``start``.

        Raises the named cause: GuestPanic, EmulationFailure, QemuDied, GuestHang
        (no console output for ``silence_timeout`` s) or BootTimeout."""
        assert self.console is not None
        rx = re.compile(pattern.encode())
        deadline = time.monotonic() + timeout
        next_state_check = 0.0
        while True:
            seen = len(self.console)
            m = rx.search(self.console.data(start))
            if m:
                return m
            fatal = self.fatal_console_error(start)
            if fatal is not None:
                raise fatal
            self._raise_if_dead()
            now = time.monotonic()
            if now >= next_state_check:
                state = self.run_state()
                if state in DEAD_RUN_STATES:
                    cls, msg = DEAD_RUN_STATES[state]
                    raise cls(msg)
                next_state_check = now + 1.0
            if silence_timeout is not None and now - self.console.last_output > silence_timeout:
                raise GuestHang(f"no console output for {silence_timeout:.0f}s while waiting for {what}; "
                                f"last line: {self.last_line()!r}")
            if now > deadline:
                raise BootTimeout(f"timed out after {timeout:.0f}s waiting for {what}; "
                                  f"last console line: {self.last_line()!r}")
            self.console.wait_change(seen, poll)

    # ------------------------------------------------------------------ teardown
    def quit(self, timeout: float = 3.0) -> None:
        """Ask QEMU to quit via QMP, then make sure it is gone: SIGKILL within ``timeout`` + 1 s."""
        deadline = time.monotonic() + timeout
        asked = self.alive() and self.qmp is not None
        if asked:
            try:
                self.qmp.settimeout(min(1.0, timeout))  # type: ignore[attr-defined]
                self.qmp_cmd("quit")
            except Exception:
                pass
        self.close(grace=max(0.0, deadline - time.monotonic()) if asked else 0.0, term_grace=0.5)

    def close(self, grace: float = 3.0, term_grace: float = 2.0) -> None:
        """Kill and reap QEMU (idempotent)."""
        if self.qmp is not None:
            try:
                self.qmp.close()  # type: ignore[attr-defined]
            except Exception:
                pass
            self.qmp = None
        if self.child is not None:
            deadline = time.monotonic() + grace
            while self.alive() and time.monotonic() < deadline:
                time.sleep(0.05)
            if self.alive():
                try:
                    os.kill(self.child.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                t = time.monotonic() + term_grace
                while self.alive() and time.monotonic() < t:
                    time.sleep(0.05)
            try:
                self.child.close(force=True)  # SIGKILL if still alive, then reap
            except Exception:
                try:
                    os.kill(self.child.pid, signal.SIGKILL)
                    os.waitpid(self.child.pid, 0)
                except (ProcessLookupError, ChildProcessError):
                    pass
            self.exit_status = self.child.exitstatus if self.child.exitstatus is not None else self.child.signalstatus
        if self.console is not None:
            self.console.close()
        try:
            self.config.qmp_socket.unlink()
        except FileNotFoundError:
            pass

    def __enter__(self) -> "Machine":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def short_socket_dir(tmp: Optional[str] = None) -> Path:
    """A short private directory for unix sockets (sun_path is 108 bytes), named ``ph-<pid>-...``.

    A harness that is SIGKILLed cannot remove its own; so each new one first removes those of
    pinharness processes that no longer exist."""
    base = Path(tmp or tempfile.gettempdir())
    for old in base.glob("ph-*-*"):
        pid = old.name.split("-")[1]
        if pid.isdigit() and int(pid) != os.getpid() and not os.path.exists(f"/proc/{pid}"):
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"ph-{os.getpid()}-", dir=base))


# --------------------------------------------------------------------------- accelerator

@dataclass(frozen=True)
class AccelChoice:
    accel: str  # kvm | tcg
    reason: str


def kvm_usable_device() -> Optional[str]:
    """None if /dev/kvm can be opened read-write, else why not."""
    if not os.path.exists("/dev/kvm"):
        return "no /dev/kvm"
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
        os.close(fd)
    except OSError as exc:
        return f"/dev/kvm not usable ({exc.strerror})"
    return None


def choose_accel(requested: str, canary: Callable[[], None], log: Callable[[str], None] = print) -> AccelChoice:
    """auto → KVM only when /dev/kvm opens and ``canary()`` (a short KVM boot of
    the real kernel to userspace) succeeds; otherwise TCG, saying why."""
    if requested == "tcg":
        return AccelChoice("tcg", "requested")
    problem = kvm_usable_device()
    if problem is None:
        try:
            canary()
            return AccelChoice("kvm", "canary boot under KVM reached userspace")
        except VMError as exc:
            problem = f"KVM canary boot failed: {exc}"
    if requested == "kvm":
        raise EmulationFailure(f"--accel kvm requested but {problem}; use --accel auto or tcg")
    log(f"pinharness: warning: KVM not used, falling back to TCG ({problem})")
    return AccelChoice("tcg", problem)
