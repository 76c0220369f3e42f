"""Fault injection: broken kernel images are named before boot, in one line (issue 16)."""
import random
import struct
from pathlib import Path

import pytest

from harness.errors import KernelError
from harness.vm import kernel as k
from harness.vm import kernel_image as ki

pytestmark = pytest.mark.fault

SETUP_SECTS = 34  # boot sector + 34 sectors = 0x4600 bytes of real-mode code, like Debian's
PARAGRAPHS = 4096  # 64 KiB of protected-mode payload
DEBIAN_VERSION_AT = 0x44C0  # where Debian's bzImage keeps its version string


def bzimage(path: Path, release: str = "6.1.0-57-amd64", seed: int = 0) -> Path:
    """A bzImage whose header is consistent with its size: valid until we break it."""
    setup = bytearray((SETUP_SECTS + 1) * 512)
    setup[0x1F1] = SETUP_SECTS
    setup[0x1F4:0x1F8] = PARAGRAPHS.to_bytes(4, "little")
    setup[0x1FE:0x200] = b"\x55\xaa"
    setup[0x202:0x206] = b"HdrS"
    setup[0x206:0x208] = (0x20F).to_bytes(2, "little")
    setup[0x20E:0x210] = (DEBIAN_VERSION_AT - 0x200).to_bytes(2, "little")
    setup[0x236] = 0x7F  # xloadflags: XLF_KERNEL_64 and friends
    text = f"{release} (debian-kernel@lists.debian.org) #1 SMP".encode() + b"\0"
    setup[DEBIAN_VERSION_AT:DEBIAN_VERSION_AT + len(text)] = text
    payload = random.Random(seed).randbytes(PARAGRAPHS * 16)
    path.write_bytes(bytes(setup) + payload)
    return path


def elf(path: Path, machine: int = 62, bits: int = 64, phnum: int = 2, seg_size: int = 4096) -> Path:
    """A minimal ELF with ``phnum`` PT_LOAD segments laid out after the program headers."""
    if bits == 64:
        ehsize, phentsize, phfmt = 64, 56, "<IIQQQQQQ"
    else:
        ehsize, phentsize, phfmt = 52, 32, "<IIIIIIII"
    first = ehsize + phnum * phentsize
    ident = b"\x7fELF" + bytes([2 if bits == 64 else 1, 1, 1]) + bytes(9)
    if bits == 64:
        hdr = ident + struct.pack("<HHIQQQIHHHHHH", 2, machine, 1, 0x1000000, ehsize, 0, 0, ehsize, phentsize,
                                  phnum, 64, 0, 0)
        phs = b"".join(struct.pack(phfmt, 1, 5, first + i * seg_size, 0x1000000 + i * seg_size, 0, seg_size,
                                   seg_size, 4096) for i in range(phnum))
    else:
        hdr = ident + struct.pack("<HHIIIIIHHHHHH", 2, machine, 1, 0x100000, ehsize, 0, 0, ehsize, phentsize,
                                  phnum, 40, 0, 0)
        phs = b"".join(struct.pack(phfmt, 1, first + i * seg_size, 0x100000 + i * seg_size, 0, seg_size, seg_size,
                                   5, 4096) for i in range(phnum))
    path.write_bytes(hdr + phs + bytes(phnum * seg_size))
    return path


def one_line(exc: pytest.ExceptionInfo, path: Path) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and str(path) in msg
    return msg


def test_valid_synthetic_images_pass(tmp_path):
    assert k.identify_image(bzimage(tmp_path / "bzImage")) == "bzimage"
    assert k.identify_image(elf(tmp_path / "vmlinux")) == "elf"


def test_debian_release_string_past_16k_is_read(tmp_path):
    assert k.bzimage_release(bzimage(tmp_path / "vmlinuz", "6.1.0-57-amd64")) == "6.1.0-57-amd64"
    assert k.from_image(tmp_path / "vmlinuz").release == "6.1.0-57-amd64"


@pytest.mark.parametrize("keep", [0x210, 0x1000, 0x4000, 0x4600, 0x4601, 0x8000, 0xC000, 0x14000,
                                  0x145FF])
def test_truncated_bzimage_is_named_with_both_sizes(tmp_path, keep):
    path = bzimage(tmp_path / "bzImage")
    declared = path.stat().st_size
    path.write_bytes(path.read_bytes()[:keep])
    with pytest.raises(KernelError) as exc:
        k.from_image(path)
    assert f"is truncated: {keep} bytes, the header declares {declared}" in one_line(exc, path)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("size", [0, 1, 511, 4096, 1 << 20])
def test_random_bytes_are_not_a_kernel(tmp_path, seed, size):
    path = tmp_path / "vmlinuz"
    data = bytearray(random.Random(seed * 7919 + size).randbytes(size))
    if data[:4] == b"\x7fELF" or data[0x202:0x206] == b"HdrS":
        data[0] ^= 0xFF  # (never happens with these seeds; keeps the trial honest)
    path.write_bytes(bytes(data))
    with pytest.raises(KernelError, match="is not a kernel image") as exc:
        k.from_image(path)
    one_line(exc, path)


@pytest.mark.parametrize("machine,name", [(183, "an AArch64 kernel"), (40, "an ARM kernel"),
                                          (243, "a RISC-V kernel"), (21, "a PowerPC64 kernel"),
                                          (22, "a s390 kernel"), (258, "a LoongArch kernel"),
                                          (3, "an i386 kernel"), (8, "a MIPS kernel"), (999, "e_machine 999")])
@pytest.mark.parametrize("bits", [32, 64])
def test_wrong_architecture_elf_is_named(tmp_path, machine, name, bits):
    path = elf(tmp_path / "vmlinux", machine=machine, bits=bits)
    with pytest.raises(KernelError) as exc:
        k.from_image(path)
    assert name in one_line(exc, path) and "x86-64" in str(exc.value)


@pytest.mark.parametrize("magic_at,magic,name", ki.FOREIGN_MAGICS)
def test_wrong_architecture_raw_image_is_named(tmp_path, magic_at, magic, name):
    data = bytearray(1 << 16)
    data[magic_at:magic_at + len(magic)] = magic
    path = tmp_path / "Image"
    path.write_bytes(bytes(data))
    with pytest.raises(KernelError) as exc:
        ki.kind(path, "x86_64")  # an x86-64 guest is asked for
    assert name in one_line(exc, path)
    if magic == ki.ARM64_MAGIC:  # given alone, an arm64 Image is an arm64 guest's kernel
        assert k.from_image(path).arch == "arm64"
    else:
        with pytest.raises(KernelError) as exc:
            k.from_image(path)
        assert name in one_line(exc, path)


@pytest.mark.parametrize("bits", [32, 64])
@pytest.mark.parametrize("cut", [0.3, 0.6, 0.9, 0.999])
def test_truncated_elf_segments_are_named(tmp_path, bits, cut):
    path = elf(tmp_path / "vmlinux", bits=bits, phnum=3)
    data = path.read_bytes()
    keep = int(len(data) * cut)
    path.write_bytes(data[:keep])
    with pytest.raises(KernelError) as exc:
        k.identify_image(path)
    assert f"is truncated: {keep} bytes" in one_line(exc, path)


@pytest.mark.parametrize("keep", [8, 20, 40, 100, 150])
def test_elf_cut_inside_its_headers_is_named(tmp_path, keep):
    path = elf(tmp_path / "vmlinux", phnum=3)
    path.write_bytes(path.read_bytes()[:keep])
    with pytest.raises(KernelError, match="truncated") as exc:
        k.identify_image(path)
    one_line(exc, path)


def test_32bit_bzimage_is_named(tmp_path):
    path = bzimage(tmp_path / "bzImage")
    data = bytearray(path.read_bytes())
    data[0x236] = 0
    path.write_bytes(bytes(data))
    with pytest.raises(KernelError, match="32-bit x86 kernel") as exc:
        k.identify_image(path)
    one_line(exc, path)
