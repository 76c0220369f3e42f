"""Talking to a booted guest over SSH (paramiko) with per-run keys:
run commands with a timeout, copy files, write kmsg markers."""
from __future__ import annotations

import base64
import io
import logging
import select
import shlex
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import paramiko

from harness.errors import CommandKilled, CommandTimeout, SSHStall, VMError

EOF_GRACE = 2.0  # seconds to wait for the channel's EOF after the exit status


@dataclass(frozen=True)
class SSHKey:
    private_openssh: str
    public_line: str  # "ssh-ed25519 AAAA... pinharness"

    @classmethod
    def generate(cls) -> "SSHKey":
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        key = Ed25519PrivateKey.generate()
        priv = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                 serialization.NoEncryption()).decode()
        pub = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                            serialization.PublicFormat.OpenSSH).decode()
        return cls(priv, pub + " pinharness")

    def pkey(self) -> paramiko.PKey:
        return paramiko.Ed25519Key.from_private_key(io.StringIO(self.private_openssh))

    def cmdline_value(self) -> str:
        """The public key line, base64'd so it is one word on the kernel command line."""
        return base64.b64encode(self.public_line.encode()).decode()


@dataclass
class CommandResult:
    command: str
    exit_status: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    def check(self) -> "CommandResult":
        if self.exit_status != 0:
            raise VMError(f"guest command failed (exit {self.exit_status}): {self.command!r}: "
                          f"{(self.stderr or self.stdout).strip()[-300:]}")
        return self


def record_exit_signals(transport: paramiko.Transport, signals: dict[int, str]) -> None:
    """Make ``transport`` keep the signal of each channel whose command was killed (RFC 4254
    "exit-signal", e.g. "KILL"), by channel id, in ``signals``. paramiko drops that request and
    reports exit status -1, as if the connection had died."""
    table = getattr(transport, "_channel_handler_table", None)
    request = paramiko.common.MSG_CHANNEL_REQUEST
    if not isinstance(table, dict) or request not in table:
        return  # another paramiko: killed commands stay "connection lost"
    original = table[request]

    def handle_request(chan: paramiko.Channel, m: paramiko.Message) -> None:
        start = m.packet.tell()
        if m.get_text() == "exit-signal":
            m.get_boolean()  # want_reply
            signals[chan.chanid] = m.get_text()
            chan.status_event.set()  # the exit is known: exit_status_ready(), status stays -1
            return
        m.packet.seek(start)
        original(chan, m)

    transport._channel_handler_table = {**table, request: handle_request}  # this transport only


class SSHLog:
    """paramiko's logging for one guest (its transport thread logs tracebacks) into a file in
    the guest's artifacts, never the terminal: a logger of its own that does not propagate."""

    def __init__(self, path: Path, channel: str, level: int = logging.INFO):
        self.channel = channel
        self.logger = logging.getLogger(channel)
        self.handler = _QuietFileHandler(path, delay=True)
        self.handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        self.logger.addHandler(self.handler)
        if not any(isinstance(h, logging.NullHandler) for h in self.logger.handlers):
            self.logger.addHandler(logging.NullHandler())  # stays: a late transport-thread line goes nowhere
        self.logger.setLevel(level)
        self.logger.propagate = False

    def close(self) -> None:
        self.logger.removeHandler(self.handler)
        self.handler.close()


class _QuietFileHandler(logging.FileHandler):
    def handleError(self, record: logging.LogRecord) -> None:  # a full disk loses SSH log lines, silently
        pass


class Guest:
    """An SSH connection to the guest as root. ``log_channel``: the logger paramiko logs to (see SSHLog)."""

    def __init__(self, port: int, key: SSHKey, host: str = "127.0.0.1", log_channel: Optional[str] = None):
        self.host = host
        self.port = port
        self.key = key
        self.log_channel = log_channel
        self.client: Optional[paramiko.SSHClient] = None
        self.exit_signals: dict[int, str] = {}  # channel id -> signal name, from "exit-signal"

    def connect(self, timeout: float, alive: Callable[[], None] = lambda: None) -> None:
        """Connect, retrying until ``timeout``; ``alive()`` raises if the VM died meanwhile."""
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            alive()
            client = paramiko.SSHClient()
            client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
            if self.log_channel:
                client.set_log_channel(self.log_channel)
            left = max(0.5, deadline - time.monotonic())  # no single attempt outlives the deadline
            try:
                client.connect(self.host, port=self.port, username="root", pkey=self.key.pkey(),
                               look_for_keys=False, allow_agent=False, timeout=min(10, left),
                               banner_timeout=min(30, left), auth_timeout=min(30, left))
                client.get_transport().set_keepalive(5)  # type: ignore[union-attr]
                record_exit_signals(client.get_transport(), self.exit_signals)  # type: ignore[arg-type]
                self.client = client
                return
            except (paramiko.SSHException, OSError, EOFError) as exc:
                last = exc
                client.close()
                time.sleep(0.3)
        raise VMError(f"SSH to the guest on 127.0.0.1:{self.port} failed for {timeout:.0f}s: {last}")

    def _transport(self) -> paramiko.Transport:
        if self.client is None or self.client.get_transport() is None:
            raise VMError("not connected to the guest")
        return self.client.get_transport()  # type: ignore[return-value]

    def run(self, command: str, timeout: float = 60.0, alive: Callable[[], None] = lambda: None,
            stdin: Optional[bytes] = None) -> CommandResult:
        """Run ``command`` with bash in the guest; CommandTimeout after ``timeout`` s."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        try:
            chan = self._transport().open_session(timeout=min(timeout, 30))
        except (paramiko.SSHException, OSError, EOFError) as exc:
            alive()
            if "Timeout opening channel" in str(exc):
                raise SSHStall(f"SSH opened no channel in {min(timeout, 30):.0f}s for {command!r}")
            raise VMError(f"cannot open an SSH session to the guest: {exc}")
        out, err = bytearray(), bytearray()
        try:
            chan.exec_command(command)
            if stdin is not None:
                chan.sendall(stdin)
                chan.shutdown_write()
            next_alive = t0 + 0.5
            exited_at = 0.0
            while True:
                r, _, _ = select.select([chan], [], [], 0.2)
                while chan.recv_ready():
                    out += chan.recv(65536)
                while chan.recv_stderr_ready():
                    err += chan.recv_stderr(65536)
                now = time.monotonic()
                if chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
                    # sshd may send the exit status before the last stderr data: wait for the EOF
                    # that follows all output (briefly: a background child may hold stdout open).
                    exited_at = exited_at or now
                    if chan.eof_received or now - exited_at > EOF_GRACE:
                        break
                if now > next_alive:
                    alive()
                    next_alive = now + 0.5
                if now > deadline:
                    raise CommandTimeout(f"guest command did not finish in {timeout:.0f}s: {command!r}")
                if chan.closed and not chan.exit_status_ready():
                    alive()
                    raise VMError(f"SSH channel closed before {command!r} finished")
            status = chan.recv_exit_status()
            killed_by = self.exit_signals.pop(chan.chanid, None)
            if status == -1 and killed_by:
                raise CommandKilled(f"guest command {command!r} was killed by SIG{killed_by}",
                                    signal=f"SIG{killed_by}")
            if status == -1:  # the channel closed without an exit status: the connection died
                alive()
                raise VMError(f"SSH connection lost while running {command!r}")
        except (socket.timeout, paramiko.SSHException, EOFError, OSError) as exc:
            alive()
            raise VMError(f"SSH failed running {command!r}: {exc}")
        finally:
            chan.close()
        return CommandResult(command, status, out.decode(errors="replace"), err.decode(errors="replace"),
                             time.monotonic() - t0)

    def put(self, local: Path, remote: str, mode: Optional[int] = None) -> None:
        with self.client.open_sftp() as sftp:  # type: ignore[union-attr]
            sftp.put(str(local), remote)
            if mode is not None:
                sftp.chmod(remote, mode)

    def get(self, remote: str, local: Path) -> Path:
        local.parent.mkdir(parents=True, exist_ok=True)
        with self.client.open_sftp() as sftp:  # type: ignore[union-attr]
            sftp.get(remote, str(local))
        return local

    def mark_command(self, text: str) -> str:
        """Shell command that writes a pinharness marker into the kernel log."""
        return f"echo {shlex.quote('<5>pinharness: ' + text)} > /dev/kmsg"

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
