"""Is this file a kernel QEMU can boot in the x86-64 guest? Checked before boot, from the
file's own headers: the bzImage setup header (Documentation/arch/x86/boot.rst) and the ELF
header and program headers. Every problem is one line naming the file and what is wrong.
"""
from __future__ import annotations

import struct
from pathlib import Path
from typing import Optional

from harness.errors import KernelError

BZIMAGE_MAGIC_OFFSET = 0x202  # "HdrS"
BZIMAGE_VERSION_PTR = 0x20E  # kernel_version: offset of the version string, less 0x200
SETUP_SECTS = 0x1F1  # 512-byte setup sectors after the boot sector; 0 means 4
SYSSIZE = 0x1F4  # protected-mode code in 16-byte paragraphs (4 bytes from protocol 2.04, else 2)
BOOT_VERSION = 0x206
XLOADFLAGS = 0x236  # protocol 2.12+; bit 0 XLF_KERNEL_64
ELF_MAGIC = b"\x7fELF"
EM_X86_64 = 62

# ELF e_machine -> the architecture named in errors
ELF_MACHINES: dict[int, str] = {3: "i386", 8: "MIPS", 20: "PowerPC", 21: "PowerPC64", 22: "s390", 40: "ARM",
                                62: "x86-64", 183: "AArch64", 243: "RISC-V", 258: "LoongArch"}
# Raw images of other architectures: (offset, magic, what it is)
FOREIGN_MAGICS: list[tuple[int, bytes, str]] = [
    (0x38, b"ARM\x64", "an AArch64 kernel Image"),
    (0x38, b"RSC\x05", "a RISC-V kernel Image"),
    (0x24, b"\x18\x28\x6f\x01", "a 32-bit ARM zImage"),
]
FIX = "pass an x86-64 bzImage (arch/x86/boot/bzImage) or vmlinux of a complete build"


def _head(path: Path, size: int = 0x400) -> bytes:
    with open(path, "rb") as f:
        return f.read(size)


def kind(path: Path) -> str:
    """'bzimage' or 'elf' (checked: whole, x86-64), or a one-line KernelError."""
    path = Path(path)
    if not path.exists():
        raise KernelError(f"kernel image {path} does not exist: pass a bzImage (arch/x86/boot/bzImage) or vmlinux")
    if path.is_dir():
        raise KernelError(f"kernel image {path} is a directory: use --kernel-tree for a kernel tree")
    head = _head(path)
    if head[:4] == ELF_MAGIC:
        check_elf(path, head)
        return "elf"
    if len(head) >= 0x210 and head[BZIMAGE_MAGIC_OFFSET:BZIMAGE_MAGIC_OFFSET + 4] == b"HdrS":
        check_bzimage(path, head)
        return "bzimage"
    for off, magic, what in FOREIGN_MAGICS:
        if head[off:off + len(magic)] == magic:
            raise KernelError(f"{path} is {what}, not an x86-64 kernel: {FIX}")
    raise KernelError(f"{path} is not a kernel image (no bzImage 'HdrS' header, not ELF): {FIX}")


def bzimage_declared_size(head: bytes) -> int:
    """The size the file must have: boot sector + setup sectors + syssize paragraphs."""
    setup = head[SETUP_SECTS] or 4
    version = int.from_bytes(head[BOOT_VERSION:BOOT_VERSION + 2], "little")
    width = 4 if version >= 0x204 else 2
    syssize = int.from_bytes(head[SYSSIZE:SYSSIZE + width], "little")
    return (setup + 1) * 512 + syssize * 16


def check_bzimage(path: Path, head: Optional[bytes] = None) -> None:
    head = head if head is not None else _head(path)
    size = path.stat().st_size
    declared = bzimage_declared_size(head)
    if size < declared:
        raise KernelError(f"{path} is truncated: {size} bytes, the header declares {declared}: "
                          "copy or rebuild the kernel image")
    version = int.from_bytes(head[BOOT_VERSION:BOOT_VERSION + 2], "little")
    if version >= 0x20C and len(head) > XLOADFLAGS and not head[XLOADFLAGS] & 1:
        raise KernelError(f"{path} is a 32-bit x86 kernel (no XLF_KERNEL_64 in its header): {FIX}")


def check_elf(path: Path, head: Optional[bytes] = None) -> None:
    """x86-64 machine; the ELF header, program headers and segments all inside the file."""
    head = head if head is not None else _head(path)
    size = path.stat().st_size
    if len(head) < 0x34 or head[4] not in (1, 2) or head[5] != 1:
        raise KernelError(f"{path} is truncated or not a little-endian ELF ({size} bytes): {FIX}")
    is64 = head[4] == 2
    machine = int.from_bytes(head[0x12:0x14], "little")
    if machine != EM_X86_64:
        arch = ELF_MACHINES.get(machine, f"e_machine {machine}")
        article = "an" if arch[0] in "AEIOUaeiou" else "a"
        raise KernelError(f"{path} is {article} {arch} kernel (ELF e_machine {machine}), the guest is x86-64: {FIX}")
    if is64:
        if len(head) < 0x40:
            raise KernelError(f"{path} is truncated: {size} bytes, less than an ELF header")
        phoff, = struct.unpack_from("<Q", head, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
        entry_fmt, off_at, filesz_at = "<IIQQQQQQ", 2, 5
    else:
        phoff, = struct.unpack_from("<I", head, 0x1C)
        phentsize, phnum = struct.unpack_from("<HH", head, 0x2A)
        entry_fmt, off_at, filesz_at = "<IIIIIIII", 1, 4
    if phoff + phentsize * phnum > size:
        raise KernelError(f"{path} is truncated: {size} bytes, its program headers end at {phoff + phentsize * phnum}")
    with open(path, "rb") as f:
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    need = struct.calcsize(entry_fmt)
    for i in range(phnum if phentsize >= need else 0):
        entry = struct.unpack_from(entry_fmt, table, i * phentsize)
        end = entry[off_at] + entry[filesz_at]
        if end > size:
            raise KernelError(f"{path} is truncated: {size} bytes, segment {i} ends at {end}: "
                              "copy or rebuild the kernel image")


def bzimage_release(path: Path) -> Optional[str]:
    """Release string of a bzImage from its setup header (kernel_version), or None if it is not one.
    The string may lie anywhere in the setup code (Debian's at 0x44c0): read as far as it points."""
    with open(path, "rb") as f:
        head = f.read(0x210)
        if len(head) < 0x210 or head[BZIMAGE_MAGIC_OFFSET:BZIMAGE_MAGIC_OFFSET + 4] != b"HdrS":
            return None
        ptr = int.from_bytes(head[BZIMAGE_VERSION_PTR:BZIMAGE_VERSION_PTR + 2], "little")
        if ptr == 0:
            return ""
        f.seek(ptr + 0x200)
        raw = f.read(256)
    return raw.split(b"\0", 1)[0].decode(errors="replace").split(" ", 1)[0]
