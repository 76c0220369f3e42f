"""Naming what happened to a guest from what the host can see: QEMU's run state (QMP
query-status), the console's last lines and its silence, and the OOM killer's console lines.
Pure functions over those facts, so the decisions are tested without a guest."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Sequence

from harness.errors import EmulationFailure, GuestHang, GuestPanic, QemuDied, VMError

# QMP run state -> (error, what it means). States not listed (running, ...) mean "no reason known".
RUN_STATES: dict[str, tuple[type[VMError], str]] = {
    "paused": (GuestHang, "QEMU paused the vCPUs (a QMP stop or a host-side pause)"),
    "suspended": (GuestHang, "the guest suspended itself"),
    "watchdog": (GuestHang, "the guest watchdog fired"),
    "debug": (GuestHang, "stopped in the debugger"),
    "io-error": (GuestHang, "QEMU paused the guest on a disk I/O error"),
    "internal-error": (EmulationFailure, "QEMU stopped the guest on an emulation failure"),
    "guest-panicked": (GuestPanic, "the guest kernel panicked"),
    "shutdown": (QemuDied, "the guest shut down"),
}

# The OOM killer's console line (global and memory-cgroup; 'Kill process' before v4.19).
OOM_KILL = re.compile(r"(?:Memory cgroup out of memory|Out of memory): Kill(?:ed)? process (\d+) \(([^)]*)\)[^\r\n]*")


@dataclass(frozen=True)
class OomKill:
    """One process the OOM killer killed, as the console said it."""

    pid: int
    comm: str
    line: str  # "Out of memory: Killed process 1234 (hog) total-vm:..."

    type = "OOM"  # the report type a console parser would give it: a non-crash event


def oom_kills(console: str) -> list[OomKill]:
    """The OOM kills in ``console`` text, in order."""
    return [OomKill(int(m.group(1)), m.group(2), m.group(0).strip()) for m in OOM_KILL.finditer(console)]


# The first line of a kernel report that kills the task it interrupts (an oops without panic_on_oops
# ends the task with SIGKILL or SIGSEGV): x86 and arm64 page faults, GPFs, BUG()s, oopses.
KERNEL_OOPS = re.compile(r"(?:BUG: (?:kernel NULL pointer dereference|unable to handle)|Oops: |"
                         r"general protection fault|kernel BUG at |Unable to handle kernel |Internal error: )"
                         r"[^\r\n]*")


def killed_message(base: str, console_since: str) -> str:
    """``base`` ("... was killed by SIGKILL"), plus what explains it when the console has one: the OOM
    kill, else the kernel oops the command's task died of."""
    kills = oom_kills(console_since)
    if kills:
        return f"{base}: {kills[-1].line[:200]}"
    oops = KERNEL_OOPS.search(console_since)
    if oops:
        return f"{base}: the kernel oopsed: {oops.group(0).strip()[:200]}"
    return base


def stall_error(symptom: str, run_state: Optional[str], silent_for: float, last_lines: Sequence[str]) -> VMError:
    """The error for an SSH that stalled (no channel, no answer): the run state's cause when QEMU
    knows one, else GuestHang; one line naming the state, the console's silence and last lines."""
    cls, meaning = RUN_STATES.get(run_state or "", (GuestHang, ""))
    state = f"QMP run state {run_state or 'unknown'}" + (f" ({meaning})" if meaning else "")
    tail = " | ".join(line.strip() for line in last_lines[-3:] if line.strip())
    return cls(f"guest hung: {symptom}; {state}; console silent for {silent_for:.0f}s; "
               f"last console lines: {tail!r}")
