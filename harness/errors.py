"""Errors that reach the user as one line: what is wrong and how to fix it."""


class HarnessError(Exception):
    """A user-facing error. str() is one line naming the problem and the fix."""

    exit_code = 2


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
