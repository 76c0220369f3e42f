"""harness.vm.pvh: the bzImage payload taken out for a PVH boot (synthetic images; the real
Debian kernels are checked in tests/net)."""
import lzma
import shutil
import subprocess

import pytest

from harness.vm import pvh
from harness.vm.host import Paths


def fake_bzimage(payload: bytes, setup_sects: int = 3, offset: int = 0x100) -> bytes:
    img = bytearray((setup_sects + 1) * 512 + offset)
    img[pvh.SETUP_SECTS] = setup_sects
    img[0x202:0x206] = b"HdrS"
    img[pvh.PAYLOAD_OFFSET:pvh.PAYLOAD_OFFSET + 4] = offset.to_bytes(4, "little")
    img[pvh.PAYLOAD_LENGTH:pvh.PAYLOAD_LENGTH + 4] = (len(payload) + 4).to_bytes(4, "little")
    return bytes(img) + payload + len(payload).to_bytes(4, "little") + b"\0" * 64


def test_payload_is_found_by_the_boot_protocol_fields():
    data = lzma.compress(b"\x7fELF" + b"x" * 1000, format=lzma.FORMAT_XZ)
    img = fake_bzimage(data)
    got = pvh.payload(img)
    assert got.startswith(pvh.XZ_MAGIC) and pvh.decompress(got) == b"\x7fELF" + b"x" * 1000


@pytest.mark.skipif(not shutil.which("zstd"), reason="zstd missing (python -m harness setup installs it)")
def test_zstd_payload():
    raw = b"\x7fELF" + b"y" * 5000
    data = subprocess.run(["zstd", "-q", "-c"], input=raw, capture_output=True, check=True, timeout=60).stdout
    assert pvh.decompress(pvh.payload(fake_bzimage(data))) == raw


def test_no_pvh_note_falls_back_and_is_remembered(tmp_path):
    img = tmp_path / "bzImage"
    img.write_bytes(fake_bzimage(lzma.compress(b"not an elf", format=lzma.FORMAT_XZ)))
    paths = Paths(tmp_path / "cache")
    assert pvh.pvh_vmlinux(img, paths) is None
    assert len(list((tmp_path / "cache" / "pvh").glob("*.none"))) == 1
    assert pvh.pvh_vmlinux(img, paths) is None  # from the remembered answer
    assert not list((tmp_path / "cache" / "pvh").glob("*.tmp"))


def test_an_elf_without_the_note_is_not_booted_through_pvh(tmp_path):
    src = tmp_path / "a.c"
    src.write_text("int main(void) { return 0; }\n")
    elf = tmp_path / "a.out"
    subprocess.run(["gcc", "-o", str(elf), str(src)], check=True, timeout=120)
    assert not pvh.has_pvh_note(elf) and pvh.pvh_vmlinux(elf, Paths(tmp_path)) is None
