"""Fault injection, guest side without a guest (issue 16): a command killed by a signal (the OOM
killer) is named as such, with the console's OOM line; an SSH that stalls is a hang named with
QEMU's run state and the last console lines; closing a hung guest is quick. The SSH side is a real
paramiko server in-process; QEMU and its console are fakes of the few facts the decisions read."""
import signal
import subprocess
import sys
import time
from pathlib import Path

import pexpect
import pytest

from harness.errors import (CommandKilled, CommandTimeout, EmulationFailure, GuestHang, GuestPanic, QemuDied,
                            SSHStall, VMError)
from harness.vm import diagnose
from harness.vm.guest import CommandResult, Guest, SSHKey
from harness.vm.qemu import Machine, QemuConfig
from harness.vm.vm import VM
from fault_samples import SSHServer

pytestmark = pytest.mark.fault

OOM_LINE = ("Out of memory: Killed process 1234 (hog) total-vm:3149852kB, anon-rss:945292kB, file-rss:4kB, "
            "shmem-rss:0kB, UID:0 pgtables:1900kB oom_score_adj:0")


@pytest.fixture
def server():
    s = SSHServer()
    yield s
    s.close()


@pytest.fixture
def guest(server):
    g = Guest(server.port, SSHKey.generate())
    g.connect(timeout=10)
    yield g
    g.close()


# ---------------------------------------------------------------- killed by a signal

@pytest.mark.parametrize("sig", ["KILL", "TERM", "SEGV", "ABRT", "INT", "BUS"])
def test_command_killed_by_a_signal_is_named_and_the_connection_lives(guest, sig):
    t0 = time.monotonic()
    with pytest.raises(CommandKilled) as exc:
        guest.run("kill " + sig, timeout=10)
    assert f"killed by SIG{sig}" in str(exc.value) and exc.value.signal == f"SIG{sig}"
    assert time.monotonic() - t0 < 3
    assert guest.run("echo still here", timeout=10).stdout == "still here\n"  # the connection was fine


@pytest.mark.parametrize("status", [0, 1, 137, 255])
def test_exit_status_is_not_a_signal(guest, status):
    assert guest.run(f"exit {status}", timeout=10).exit_status == status


def test_ssh_that_opens_no_channel_is_a_stall(server, guest):
    server.channel_delay = 3.0
    t0 = time.monotonic()
    with pytest.raises(SSHStall, match="opened no channel in 1s"):
        guest.run("echo x", timeout=1)
    assert time.monotonic() - t0 < 2.5


@pytest.mark.parametrize("text,expect", [
    (OOM_LINE, [(1234, "hog")]),
    ("[  12.3] Memory cgroup out of memory: Killed process 77 (fio) total-vm:1kB", [(77, "fio")]),
    ("Out of memory: Kill process 9 (old kernel) score 900 or sacrifice child\nKilled process 9 (old kernel)",
     [(9, "old kernel")]),
    ("oom-kill:constraint=CONSTRAINT_NONE,task=hog,pid=1234,uid=0\n" + OOM_LINE + "\n" + OOM_LINE.replace("1234", "5"),
     [(1234, "hog"), (5, "hog")]),
    ("hog invoked oom-killer: gfp_mask=0x140cca\nMem-Info:\n", []),
    ("", []),
])
def test_oom_kill_lines(text, expect):
    kills = diagnose.oom_kills(text)
    assert [(k.pid, k.comm) for k in kills] == expect
    assert all(k.type == "OOM" and "Kill" in k.line for k in kills)


# ---------------------------------------------------------------- VM.run's decisions, with fakes

class FakeConsole:
    def __init__(self, text: str = "", later: str = "", after: float = 0.0):
        self.buf, self.later, self.at = text, later, time.monotonic() + after
        self.last_output = time.monotonic() - 42

    def _tick(self):
        if self.later and time.monotonic() >= self.at:
            self.buf, self.later = self.buf + self.later, ""

    def __len__(self):
        self._tick()
        return len(self.buf)

    def text(self, start=0):
        self._tick()
        return self.buf[start:]

    def wait_change(self, seen, timeout):
        time.sleep(min(timeout, 0.05))


class FakeMachine:
    def __init__(self, state="running", console=None):
        self.state, self.console, self.quits, self.exit_status = state, console or FakeConsole(), [], 0

    def check(self):
        pass

    def alive(self):
        return True

    def run_state(self):
        return self.state

    def console_silence(self):
        return time.monotonic() - self.console.last_output

    def last_lines(self, n=3):
        return [ln for ln in self.console.text().splitlines() if ln.strip()][-n:]

    def quit(self, timeout):
        self.quits.append(timeout)

    def fatal_console_error(self):
        return None


class FakeGuest:
    def __init__(self, raises=None, console=None, prints=""):
        self.raises, self.commands, self.port, self.key, self.log_channel = raises, [], 1, None, None
        self.console, self.prints = console, prints  # what the kernel prints while the command runs

    def run(self, command, timeout=60, alive=None, stdin=None):
        self.commands.append(command)
        if self.prints:
            self.console.buf += self.prints
        if self.raises is not None:
            raise self.raises
        return CommandResult(command, 0, "", "", 0.0)

    def close(self):
        pass


def fake_vm(tmp_path: Path, machine: FakeMachine, guest: FakeGuest) -> VM:
    vm = VM(kernel=None, image=None, paths=None, workdir=tmp_path, log=lambda s: None)  # type: ignore[arg-type]
    vm.machine, vm.guest, vm.outcome = machine, guest, "running"  # type: ignore[assignment]
    vm._write_summary = lambda: None  # type: ignore[method-assign]
    return vm


@pytest.mark.parametrize("later", [False, True])
def test_oom_killed_command_names_the_oom_kill(tmp_path, later):
    console = FakeConsole("boot\n", later=OOM_LINE + "\n", after=0.5) if later else FakeConsole("boot\n")
    vm = fake_vm(tmp_path, FakeMachine(console=console),
                 FakeGuest(CommandKilled("guest command '/root/hog 3072' was killed by SIGKILL", "SIGKILL"),
                           console, prints="" if later else "hog invoked oom-killer\n" + OOM_LINE + "\n"))
    with pytest.raises(CommandKilled) as exc:
        vm.run("/root/hog 3072")
    msg = str(exc.value)
    assert "killed by SIGKILL" in msg and "Out of memory: Killed process 1234 (hog)" in msg and "\n" not in msg


GPF = "general protection fault, probably for non-canonical address 0xdead000000000100: 0000 [#1] SMP"
OOPS_CONSOLE = ("[   31.2] BUG: kernel NULL pointer dereference, address: 0000000000000010\n"
                "[   31.2] #PF: supervisor instruction fetch in kernel mode\n"
                "[   31.2] Oops: 0010 [#1] PREEMPT SMP NOPTI\n")


@pytest.mark.parametrize("text,cause", [
    (OOPS_CONSOLE, "the kernel oopsed: BUG: kernel NULL pointer dereference, address: 0000000000000010"),
    (f"[ 5.0] {GPF}\n", f"the kernel oopsed: {GPF}"),
    ("[ 5.0] kernel BUG at mm/filemap.c:1530!\n[ 5.0] invalid opcode: 0000 [#1]\n",
     "the kernel oopsed: kernel BUG at mm/filemap.c:1530!"),
    (OOPS_CONSOLE + OOM_LINE + "\n", OOM_LINE[:200]),  # the OOM kill is the command's own cause
    ("[ 5.0] BUG: workqueue lockup - pool cpus=0\n", None),  # not a report that kills the task
    ("", None),
])
def test_killed_message_names_the_oops_or_the_oom_kill(text, cause):
    msg = diagnose.killed_message("guest command 'x' was killed by SIGKILL", text)
    assert msg == "guest command 'x' was killed by SIGKILL" + (f": {cause}" if cause else "")


def test_command_killed_by_an_oops_names_it(tmp_path):
    console = FakeConsole("boot\n")
    vm = fake_vm(tmp_path, FakeMachine(console=console),
                 FakeGuest(CommandKilled("guest command 'insmod x.ko' was killed by SIGKILL", "SIGKILL"), console,
                           prints=OOPS_CONSOLE))
    with pytest.raises(CommandKilled, match="killed by SIGKILL: the kernel oopsed: BUG: kernel NULL pointer"):
        vm.run("insmod x.ko")


def test_signal_without_oom_is_named_without_waiting(tmp_path):
    vm = fake_vm(tmp_path, FakeMachine(console=FakeConsole("boot\n")),
                 FakeGuest(CommandKilled("guest command 'x' was killed by SIGTERM", "SIGTERM")))
    t0 = time.monotonic()
    with pytest.raises(CommandKilled, match="killed by SIGTERM$"):
        vm.run("x")
    assert time.monotonic() - t0 < 0.5


def test_oom_line_from_before_the_command_is_not_blamed(tmp_path):
    vm = fake_vm(tmp_path, FakeMachine(console=FakeConsole(OOM_LINE + "\n")),
                 FakeGuest(CommandKilled("guest command 'x' was killed by SIGKILL", "SIGKILL")))
    with pytest.raises(CommandKilled) as exc:
        vm.run("x")
    assert "Out of memory" not in str(exc.value)


@pytest.mark.parametrize("state,cls", [
    ("paused", GuestHang), ("running", GuestHang), (None, GuestHang), ("io-error", GuestHang),
    ("suspended", GuestHang), ("watchdog", GuestHang),
    ("internal-error", EmulationFailure), ("guest-panicked", GuestPanic), ("shutdown", QemuDied),
])
def test_ssh_stall_is_named_by_run_state(tmp_path, state, cls):
    console = FakeConsole("[   5.1] ext4 mounted\n[   9.9] pinharness: workload start\n")
    vm = fake_vm(tmp_path, FakeMachine(state, console), FakeGuest(SSHStall("SSH opened no channel in 30s for 'x'")))
    with pytest.raises(cls) as exc:
        vm.run("x")
    msg = str(exc.value)
    assert f"QMP run state {state or 'unknown'}" in msg and "pinharness: workload start" in msg
    assert "silent for 42s" in msg and "\n" not in msg and vm.outcome == "hang"


@pytest.mark.parametrize("state", ["paused", "running"])
def test_command_timeout_on_an_unresponsive_guest_is_a_hang(tmp_path, state, monkeypatch):
    vm = fake_vm(tmp_path, FakeMachine(state, FakeConsole("last words\n")),
                 FakeGuest(CommandTimeout("guest command did not finish in 5s: 'x'")))
    monkeypatch.setattr(vm, "responsive", lambda: False)
    with pytest.raises(GuestHang, match=f"guest stopped answering.*QMP run state {state}.*last words"):
        vm.run("x")


def test_command_timeout_on_a_live_guest_stays_a_timeout(tmp_path, monkeypatch):
    vm = fake_vm(tmp_path, FakeMachine(), FakeGuest(CommandTimeout("guest command did not finish in 5s: 'x'")))
    monkeypatch.setattr(vm, "responsive", lambda: True)
    with pytest.raises(CommandTimeout):
        vm.run("x")


def test_closing_a_hung_guest_skips_dmesg_and_quits_fast(tmp_path):
    machine, guest = FakeMachine("paused"), FakeGuest(SSHStall("SSH opened no channel in 30s for 'x'"))
    vm = fake_vm(tmp_path, machine, guest)
    with pytest.raises(GuestHang):
        vm.run("x")
    vm.close()
    assert guest.commands == ["x"] and machine.quits and machine.quits[0] <= 4


class StuckQMP:
    """A QMP connection whose commands never answer (they time out)."""

    def __init__(self):
        self.timeout = 10.0

    def settimeout(self, t):
        self.timeout = t

    def cmd(self, name, **args):
        time.sleep(self.timeout)
        raise TimeoutError(name)

    def close(self):
        pass


STUBBORN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('up', flush=True); time.sleep(60)"


@pytest.mark.parametrize("qmp", ["stuck", "none"])
def test_quit_kills_a_stuck_process_within_5s(tmp_path, qmp):
    cfg = QemuConfig(kernel=tmp_path / "k", append=[], console_log=tmp_path / "c.log", qmp_socket=tmp_path / "q")
    m = Machine(cfg, tmp_path)
    m.child = pexpect.spawn(sys.executable, ["-c", STUBBORN], timeout=10)
    m.child.expect("up")
    m.qmp = StuckQMP() if qmp == "stuck" else None
    t0 = time.monotonic()
    m.quit(timeout=3.0)
    assert time.monotonic() - t0 <= 5.0 and not m.child.isalive()


def test_paused_guest_is_a_hang_without_a_probe(tmp_path, monkeypatch):
    vm = fake_vm(tmp_path, FakeMachine("paused", FakeConsole("last words\n")),
                 FakeGuest(CommandTimeout("guest command did not finish in 5s: 'x'")))

    def probe():
        raise AssertionError("QEMU already said the guest is paused: no 20 s SSH probe")

    monkeypatch.setattr(vm, "responsive", probe)
    with pytest.raises(GuestHang, match="QMP run state paused"):
        vm.run("x")


@pytest.fixture
def silent_server():
    """Accepts TCP connections (as QEMU's user-mode network does for a hung guest) and says nothing."""
    import socket
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    yield srv.getsockname()[1]
    srv.close()


@pytest.mark.parametrize("timeout", [1.0, 2.0])
def test_connect_to_a_silent_guest_keeps_its_timeout(silent_server, timeout):
    t0 = time.monotonic()
    with pytest.raises(VMError, match="SSH to the guest"):
        Guest(silent_server, SSHKey.generate()).connect(timeout=timeout)
    assert time.monotonic() - t0 < timeout + 1.5
