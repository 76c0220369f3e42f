"""The uncompressed vmlinux of a bzImage, booted through PVH.

Under TCG the bzImage's own XZ decompressor takes ~3 s of every boot. QEMU boots an ELF vmlinux
that carries a PVH entry note (CONFIG_PVH=y, as in Debian's kernels) directly, so we take the
payload out of the bzImage once per kernel (the boot protocol's payload_offset/payload_length;
XZ or ZSTD), keep it in the cache, and boot that. Anything unexpected (no PVH note, another
compression) falls back to the bzImage.
"""
from __future__ import annotations

import hashlib
import lzma
import subprocess
import sys
from pathlib import Path
from typing import Callable, Optional

from harness.vm import cache
from harness.vm.host import Paths, which

SETUP_SECTS = 0x1F1
PAYLOAD_OFFSET = 0x248
PAYLOAD_LENGTH = 0x24C
XEN_ELFNOTE_PHYS32_ENTRY = 18
XZ_MAGIC = b"\xfd7zXZ\x00"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


def payload(bzimage: bytes) -> bytes:
    """The compressed kernel inside a bzImage (boot protocol 2.08+), without size_append's 4 bytes."""
    setup_sects = bzimage[SETUP_SECTS] or 4
    start = (setup_sects + 1) * 512 + int.from_bytes(bzimage[PAYLOAD_OFFSET:PAYLOAD_OFFSET + 4], "little")
    length = int.from_bytes(bzimage[PAYLOAD_LENGTH:PAYLOAD_LENGTH + 4], "little")
    return bzimage[start:start + length]


def decompress(data: bytes) -> Optional[bytes]:
    if data.startswith(XZ_MAGIC):
        dec = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
        return dec.decompress(data)  # trailing bytes (the appended size) land in unused_data
    if data.startswith(ZSTD_MAGIC):
        zstd = which("zstd")
        if zstd is None:
            return None
        proc = subprocess.run([zstd, "-dcq"], input=data[:-4], capture_output=True, timeout=120)
        return proc.stdout if proc.returncode == 0 else None
    return None


def has_pvh_note(path: Path) -> bool:
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    try:
        with open(path, "rb") as f:
            elf = ELFFile(f)
            for seg in elf.iter_segments():
                if seg.header.p_type == "PT_NOTE":
                    for note in seg.iter_notes():
                        if note["n_name"] == "Xen" and note["n_type"] == XEN_ELFNOTE_PHYS32_ENTRY:
                            return True
    except (ELFError, OSError, ValueError):
        return False
    return False


class _NoPVH(Exception):
    """The bzImage holds no vmlinux QEMU can boot through PVH."""


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def pvh_vmlinux(image: Path, paths: Paths, log: Callable[[str], None] = _say) -> Optional[Path]:
    """The PVH-bootable vmlinux of ``image`` (extracted once, cached by the image's hash), or None.
    Written, stamped and locked as a cached artifact: two processes extract it once, and a damaged
    one is extracted again."""
    try:
        raw = Path(image).read_bytes()
    except OSError:  # not ours to name: the image check before boot says what is wrong with it
        return None
    if raw[:4] == b"\x7fELF":
        return Path(image) if has_pvh_note(Path(image)) else None
    digest = hashlib.sha256(raw).hexdigest()[:16]
    out = paths.sub("pvh") / f"{digest}.vmlinux"
    no = out.with_suffix(".none")  # remembered: this kernel has no usable vmlinux
    if no.exists():
        return None

    def extract(tmp: Path) -> None:
        elf = decompress(payload(raw)) if len(raw) > PAYLOAD_LENGTH + 4 else None
        if not elf or elf[:4] != b"\x7fELF":
            raise _NoPVH()
        tmp.write_bytes(elf)
        if not has_pvh_note(tmp):
            raise _NoPVH()

    def verify(path: Path) -> Optional[str]:
        return None if has_pvh_note(path) else "not an ELF with a PVH note"

    if out.exists() and not cache.stamp_path(out).exists():
        cache.adopt(out, verify)  # one extracted before the stamps: keep it (snapshots name it by its mtime)
    try:
        return cache.atomic_artifact(out, extract, log=log)
    except _NoPVH:
        no.touch()
        return None
