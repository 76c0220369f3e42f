"""Helpers the VM tier's fault trials share (tests/vm/test_failures.py, tests/vm/test_fault_vm.py):
a guest booted with the session's kernel and accelerator, the checks every trial ends with
(QEMU gone, console kept, time within the timeout), harness subprocesses and the QEMU
processes still running on a path, and a kernel module whose init oopses."""
from __future__ import annotations

import io
import lzma
import os
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from harness.vm.vm import VM, VMOptions

REPO = Path(__file__).resolve().parents[2]
CLOSE_LIMIT = 5.0  # closing a failed or hung guest (issue 16)
MARGIN = 15.0  # over a trial's own timeout: TCG on a loaded 2-core machine


def boot_vm(ph_session, kernel, guest_image, tmp_path: Path, **opts) -> VM:
    """A guest of the session's kernel, accelerator and ``opts`` (workdir ``tmp_path/vm``), not yet booted."""
    options = VMOptions(accel=ph_session.config.getoption("--accel"), **opts)
    return VM(kernel, guest_image, ph_session.paths, tmp_path / "vm", options, accel=ph_session.accel_for(kernel),
              log=lambda s: None)


def gone(pid: int) -> bool:
    """True when no process (not even a zombie) with this pid is left."""
    return not os.path.exists(f"/proc/{pid}")


def close_and_check(vm: VM, limit: float = CLOSE_LIMIT) -> float:
    """Close ``vm``; assert it took at most ``limit`` s, QEMU is gone and the console log was kept.
    Returns the seconds closing took."""
    pid = vm.machine.child.pid
    t0 = time.monotonic()
    vm.close()
    took = time.monotonic() - t0
    assert took <= limit, f"closing the guest took {took:.1f}s (limit {limit:.0f}s)"
    assert gone(pid), f"QEMU {pid} is still there"
    log = vm.workdir / "console.log"
    assert log.exists() and log.stat().st_size > 0, "the console log was not kept"
    return took


def qemus_on(path: Path) -> list[int]:
    """Pids of the qemu-system processes whose command line names ``path`` (a test's unique directory)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and b"qemu-system" in argv[0] and any(str(path).encode() in a for a in argv):
            found.append(int(proc.name))
    return found


def wait_until(cond, timeout: float, what: str, poll: float = 0.2):
    """Poll ``cond()`` until it returns something true; fail after ``timeout`` s naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def file_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def harness(args: Sequence[str], stderr: Path, env: Optional[dict] = None, cwd: Path = REPO) -> subprocess.Popen:
    """``python -m harness ARGS`` as a child, its stderr (the harness's messages) into a file."""
    with stderr.open("wb") as err:  # the child has its own copy
        return subprocess.Popen([sys.executable, "-m", "harness", *args], cwd=cwd, stdout=subprocess.PIPE,
                                stderr=err, env={**os.environ, **(env or {})})


SIG_MARKER = b"~Module signature appended~\n"
SIG_TRAILER = 12  # struct module_signature, whose last 4 bytes are the signature's length (big-endian)
R_X86_64_64 = 1


def oops_module(ko: Path, init_address: int = 0x10) -> bytes:
    """A module of the kernel (``ko``, maybe .xz) whose init pointer is ``init_address``: loading it
    calls there and the kernel oopses (an instruction fetch at a NULL-page address). Its signature
    is dropped (the kernel takes an unsigned module, tainted) and its relocation of
    ``__this_module.init`` made absolute."""
    from elftools.elf.elffile import ELFFile

    data = ko.read_bytes()
    if ko.suffix == ".xz":
        data = lzma.decompress(data)
    if data.endswith(SIG_MARKER):
        sig_len = struct.unpack(">I", data[-len(SIG_MARKER) - 4:-len(SIG_MARKER)])[0]
        data = data[:-len(SIG_MARKER) - SIG_TRAILER - sig_len]
    out = bytearray(data)
    elf = ELFFile(io.BytesIO(data))
    rela = elf.get_section_by_name(".rela.gnu.linkonce.this_module")
    symtab = elf.get_section(rela["sh_link"])
    for i, rel in enumerate(rela.iter_relocations()):
        if symtab.get_symbol(rel["r_info_sym"]).name == "init_module":
            struct.pack_into("<QQq", out, rela["sh_offset"] + i * rela["sh_entsize"], rel["r_offset"],
                             R_X86_64_64, init_address)
            return bytes(out)
    raise AssertionError(f"{ko} has no relocation of __this_module.init")


# Modules no guest loads by itself, with an init function, in Debian's kernels (6.1 to 7.x)
OOPS_MODULES = ("kernel/lib/notifier-error-inject.ko", "kernel/lib/test_static_key_base.ko",
                "kernel/drivers/net/dummy.ko")


def module_file(kernel, candidates: Sequence[str]) -> Optional[Path]:
    """The first of the kernel's modules ``candidates`` (compressed or not) it has, or None."""
    if kernel.modules_dir is None:
        return None
    for relative in candidates:
        for cand in (kernel.modules_dir / relative, kernel.modules_dir / f"{relative}.xz"):
            if cand.exists():
                return cand
    return None
