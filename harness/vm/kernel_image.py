"""Is this file a kernel QEMU can boot in the guest's architecture? Checked before boot, from
the file's own headers: the bzImage setup header (Documentation/arch/x86/boot.rst), the arm64
Image header (Documentation/arch/arm64/booting.rst) and its PE/COFF section table, and the ELF
header and program headers. Every problem is one line naming the file and what is wrong.

``bootable`` turns what a distribution ships into what QEMU's -kernel boots without firmware:
an arm64 EFI zboot image (``vmlinuz.efi``: "zimg") or a gzip'd Image is unpacked once.
"""
from __future__ import annotations

import gzip
import lzma
import os
import struct
import zlib
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
EM_AARCH64 = 183
ARM64_MAGIC_OFFSET = 0x38
ARM64_MAGIC = b"ARM\x64"
ZBOOT_TYPE = b"zimg"  # at offset 4 of an EFI zboot image, after "MZ\0\0"

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
FIX_ARM64 = "pass an arm64 Image (arch/arm64/boot/Image) of a complete build"


def _head(path: Path, size: int = 0x400) -> bytes:
    with open(path, "rb") as f:
        return f.read(size)


def kind(path: Path, arch: str = "x86_64") -> str:
    """'bzimage' or 'elf' (x86_64), 'image' (arm64), checked whole and for ``arch``; or a one-line KernelError."""
    path = Path(path)
    if not path.exists():
        raise KernelError(f"kernel image {path} does not exist: "
                          + ("pass an arm64 Image (arch/arm64/boot/Image)" if arch == "arm64"
                             else "pass a bzImage (arch/x86/boot/bzImage) or vmlinux"))
    if path.is_dir():
        raise KernelError(f"kernel image {path} is a directory: use --kernel-tree for a kernel tree")
    head = _head(path)
    if arch == "arm64":
        return _kind_arm64(path, head)
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


def _kind_arm64(path: Path, head: bytes) -> str:
    if head[ARM64_MAGIC_OFFSET:ARM64_MAGIC_OFFSET + 4] == ARM64_MAGIC:
        check_pe_sections(path, head)
        return "image"
    if head[:4] == ELF_MAGIC:
        machine = int.from_bytes(head[0x12:0x14], "little")
        arch = ELF_MACHINES.get(machine, f"e_machine {machine}")
        raise KernelError(f"{path} is an ELF {arch} vmlinux: QEMU boots an arm64 guest from its Image: {FIX_ARM64}")
    if len(head) >= 0x210 and head[BZIMAGE_MAGIC_OFFSET:BZIMAGE_MAGIC_OFFSET + 4] == b"HdrS":
        raise KernelError(f"{path} is an x86-64 bzImage, not an arm64 kernel: {FIX_ARM64}, or drop --arch arm64")
    if head[4:8] == ZBOOT_TYPE:
        raise KernelError(f"{path} is an EFI zboot image (compressed): unpack it with kernel_image.bootable, "
                          f"or {FIX_ARM64}")
    raise KernelError(f"{path} is not an arm64 kernel Image (no 'ARM\\x64' magic at 0x38): {FIX_ARM64}")


def check_pe_sections(path: Path, head: Optional[bytes] = None) -> None:
    """An EFI-stub kernel (arm64 Image, zboot): every PE section's raw data lies inside the file.
    A file without a PE header (an Image built without the EFI stub) is not checked."""
    head = head if head is not None else _head(path)
    if head[:2] != b"MZ" or len(head) < 0x40:
        return
    pe, = struct.unpack_from("<I", head, 0x3C)
    with open(path, "rb") as f:
        f.seek(pe)
        coff = f.read(24)
        if len(coff) < 24 or coff[:4] != b"PE\0\0":
            return
        nsect, = struct.unpack_from("<H", coff, 6)
        opt_size, = struct.unpack_from("<H", coff, 20)
        f.seek(pe + 24 + opt_size)
        table = f.read(40 * nsect)
    size = path.stat().st_size
    for i in range(len(table) // 40):
        raw_size, raw_ptr = struct.unpack_from("<II", table, i * 40 + 16)
        if raw_size and raw_ptr + raw_size > size:
            raise KernelError(f"{path} is truncated: {size} bytes, PE section {i} ends at {raw_ptr + raw_size}: "
                              "copy or rebuild the kernel image")


# Decompressors of the payloads a zboot image names (its compression type string) or a bare file starts with.
DECOMPRESSORS = {
    "gzip": lambda data: zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data),
    "xz": lzma.decompress,
    "lzma": lzma.decompress,
    "zstd": None,  # the zstd command, when installed
}


def _zstd(data: bytes) -> bytes:
    import subprocess

    from harness.vm.host import which
    tool = which("zstd")
    if tool is None:
        raise KernelError("the kernel image is zstd-compressed and zstd is not installed: apt-get install zstd")
    return subprocess.run([tool, "-dc"], input=data, capture_output=True, check=True, timeout=300).stdout


def _unpack(path: Path, head: bytes) -> Optional[bytes]:
    """The arm64 Image inside a zboot image or a gzip file; None when ``path`` is neither."""
    data = path.read_bytes()
    if head[4:8] == ZBOOT_TYPE:
        offset, size = struct.unpack_from("<II", head, 8)
        comp = head[24:56].split(b"\0", 1)[0].decode(errors="replace")
        payload = data[offset:offset + size]
        if offset + size > len(data):
            raise KernelError(f"{path} is truncated: {len(data)} bytes, its zboot payload ends at {offset + size}")
    elif head[:2] == b"\x1f\x8b":
        comp, payload = "gzip", data
    else:
        return None
    if comp not in DECOMPRESSORS:
        raise KernelError(f"{path}: a zboot payload compressed with {comp!r}, which the harness cannot unpack")
    try:
        out = _zstd(payload) if comp == "zstd" else DECOMPRESSORS[comp](payload)
    except (OSError, EOFError, zlib.error, lzma.LZMAError, gzip.BadGzipFile) as exc:
        raise KernelError(f"{path}: its {comp} payload does not unpack ({exc}): the file is damaged, fetch it again")
    return out


def bootable(image: Path, arch: str, cache_dir: Path) -> Path:
    """What QEMU's -kernel boots for ``arch``: ``image`` itself, or (arm64) the Image unpacked from a
    zboot or gzip'd ``image`` into ``cache_dir`` once."""
    if arch != "arm64":
        return image
    head = _head(image)
    if head[ARM64_MAGIC_OFFSET:ARM64_MAGIC_OFFSET + 4] == ARM64_MAGIC:
        return image
    st = image.stat()
    out = Path(cache_dir) / f"Image-{st.st_size}-{st.st_mtime_ns}"
    if out.exists():
        return out
    data = _unpack(image, head)
    if data is None or data[ARM64_MAGIC_OFFSET:ARM64_MAGIC_OFFSET + 4] != ARM64_MAGIC:
        kind(image, arch)  # names what it is instead
        raise KernelError(f"{image} holds no arm64 Image: {FIX_ARM64}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(out)
    return out


def arch_of(path: Path) -> Optional[str]:
    """The architecture a bootable kernel file is for ('x86_64', 'arm64'), from its magic; None if not known."""
    head = _head(Path(path))
    if head[ARM64_MAGIC_OFFSET:ARM64_MAGIC_OFFSET + 4] == ARM64_MAGIC or head[4:8] == ZBOOT_TYPE:
        return "arm64"
    if len(head) >= 0x210 and head[BZIMAGE_MAGIC_OFFSET:BZIMAGE_MAGIC_OFFSET + 4] == b"HdrS":
        return "x86_64"
    if head[:4] == ELF_MAGIC and int.from_bytes(head[0x12:0x14], "little") == EM_X86_64:
        return "x86_64"  # an AArch64 vmlinux is not bootable as is: it stays x86_64's error to name
    return None


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
