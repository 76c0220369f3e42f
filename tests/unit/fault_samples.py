"""Synthetic inputs shared by the fault-injection trials (marker ``fault``)."""
from __future__ import annotations

from pathlib import Path


def built_tree(tmp_path: Path, makefile: str, release: str = "6.13.0") -> Path:
    """A kernel build directory with modules whose `make modules_install` is ``makefile``."""
    tree = tmp_path / "linux"
    (tree / "arch/x86/boot").mkdir(parents=True)
    bz = bytearray(0x4000)
    bz[0x202:0x206] = b"HdrS"
    (tree / "arch/x86/boot/bzImage").write_bytes(bytes(bz))
    (tree / ".config").write_text("CONFIG_MODULES=y\n")
    (tree / "modules.order").write_text("ext4.ko\n")
    (tree / "include/config").mkdir(parents=True)
    (tree / "include/config/kernel.release").write_text(release + "\n")
    (tree / "Makefile").write_text(makefile)
    return tree


# ---------------------------------------------------------------- an in-process SSH server

import socket  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

import paramiko  # noqa: E402


class _Server(paramiko.ServerInterface):
    def __init__(self, behaviour: "SSHServer"):
        self.behaviour = behaviour

    def check_auth_publickey(self, username, key):
        return paramiko.AUTH_SUCCESSFUL

    def get_allowed_auths(self, username):
        return "publickey"

    def check_channel_request(self, kind, chanid):
        time.sleep(self.behaviour.channel_delay)  # a hung guest's sshd opens no channel
        return paramiko.OPEN_SUCCEEDED

    def check_channel_exec_request(self, channel, command):
        threading.Thread(target=self.behaviour.execute, args=(channel, command.decode()), daemon=True).start()
        return True


class SSHServer:
    """A local SSH server standing in for the guest's sshd: ``echo X`` prints X, ``exit N``
    exits N, ``kill SIG`` ends the command by signal SIG (RFC 4254 exit-signal, as OpenSSH does)."""

    def __init__(self):
        self.host_key = paramiko.ECDSAKey.generate()
        self.channel_delay = 0.0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.transports: list[paramiko.Transport] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (socket.timeout, OSError):
                continue
            t = paramiko.Transport(conn)
            t.add_server_key(self.host_key)
            t.start_server(server=_Server(self))
            self.transports.append(t)

    def execute(self, chan: paramiko.Channel, command: str) -> None:
        time.sleep(0.1)  # let the server answer the exec request before the command "runs"
        verb, _, arg = command.partition(" ")
        if verb == "echo":
            chan.sendall((arg + "\n").encode())
            chan.send_exit_status(0)
        elif verb == "exit":
            chan.send_exit_status(int(arg))
        elif verb == "kill":
            m = paramiko.Message()
            m.add_byte(paramiko.common.cMSG_CHANNEL_REQUEST)
            m.add_int(chan.remote_chanid)
            m.add_string("exit-signal")
            m.add_boolean(False)
            m.add_string(arg)  # signal name without "SIG", e.g. "KILL"
            m.add_boolean(False)  # core dumped
            m.add_string("")
            m.add_string("")
            chan.transport._send_user_message(m)
        chan.shutdown_write()
        chan.close()

    def close(self):
        self.stop.set()
        self.thread.join(2)
        for t in self.transports:
            t.close()
        self.sock.close()
