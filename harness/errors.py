"""Errors that reach the user as one line: what is wrong and how to fix it."""
from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from typing import Iterator


class HarnessError(Exception):
    """A user-facing error. str() is one line naming the problem and the fix."""

    exit_code = 2


class Terminated(KeyboardInterrupt):
    """SIGTERM (CI cancelling a job, `kill`): unwinds like Ctrl-C, so guests are reaped, temporary
    files removed and the results of the cells that finished written."""

    exit_code = 143  # 128 + SIGTERM, what a shell reports for a process SIGTERM ended


class ToolMissing(HarnessError):
    pass


class KernelError(HarnessError):
    pass


class ImageError(HarnessError):
    pass


class VMError(HarnessError):
    """Base of everything that goes wrong with a running guest."""

    exit_code = 3


class BootTimeout(VMError):
    pass


class GuestPanic(VMError):
    pass


class GuestHang(VMError):
    pass


class QemuDied(VMError):
    pass


class EmulationFailure(VMError):
    pass


class CommandTimeout(VMError):
    pass


class CommandKilled(VMError):
    """A guest command killed by a signal (the OOM killer's SIGKILL, a stray kill)."""

    def __init__(self, message: str, signal: str = ""):
        super().__init__(message)
        self.signal = signal  # e.g. "SIGKILL"


class SSHStall(VMError):
    """SSH opened no channel within its timeout: the guest may be hung (VM.run names the cause)."""


class SnapshotError(VMError):
    """A guest snapshot could not be saved or restored; the caller boots the guest afresh."""


class CacheLocked(HarnessError):
    """Another process held a cached artifact's lock for longer than we wait."""


class NoSpace(HarnessError):
    """A disk filled up (ENOSPC): names the directory, what it needs and what is free."""

    @classmethod
    def at(cls, directory: os.PathLike | str, what: str, need: int = 0) -> "NoSpace":
        free = free_mib(directory)
        free_txt = f"{free} MiB free" if free is not None else "free space unknown"
        need_txt = f"needs {need >> 20} MiB" if need else "needs more"
        return cls(f"no space left in {directory} for {what} ({need_txt}, {free_txt}): free some space, "
                   "or point PINHARNESS_CACHE / --out at a bigger disk")


def free_mib(directory: os.PathLike | str) -> int | None:
    """Free MiB of the file system holding ``directory`` (or its nearest existing parent)."""
    path = os.path.abspath(directory)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize >> 20


ENOSPC_TEXT = "No space left on device"


def raise_if_enospc(tool_output: str, directory: os.PathLike | str, what: str, need: int = 0) -> None:
    """A tool that failed saying "No space left on device" becomes NoSpace naming ``directory``."""
    if ENOSPC_TEXT in tool_output:
        raise NoSpace.at(directory, what, need)


def is_enospc(exc: BaseException) -> bool:
    """An OSError ENOSPC, or a tool that failed (CalledProcessError) saying so."""
    if isinstance(exc, OSError):
        return exc.errno == errno.ENOSPC
    if isinstance(exc, subprocess.CalledProcessError):
        out = [o.decode(errors="replace") if isinstance(o, bytes) else (o or "") for o in (exc.stderr, exc.output)]
        return any(ENOSPC_TEXT in o for o in out)
    return False


@contextlib.contextmanager
def named_enospc(directory: os.PathLike | str, what: str, need: int = 0) -> Iterator[None]:
    """Turn ENOSPC raised inside the block (OSError errno 28, or a tool's CalledProcessError
    saying so) into ``NoSpace`` naming ``directory``; other errors pass through."""
    try:
        yield
    except (OSError, subprocess.CalledProcessError) as exc:
        if is_enospc(exc):
            raise NoSpace.at(directory, what, need) from None
        raise
