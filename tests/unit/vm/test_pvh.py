"""harness.vm.pvh: the bzImage payload taken out for a PVH boot (synthetic images; the real
Debian kernels are checked in tests/net)."""
import lzma
import shutil
import subprocess
import sys

import pytest

from harness.vm import cache, pvh
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


PVH_NOTE_C = ('__asm__(".pushsection .note.Xen,\\"a\\",@note\\n.balign 4\\n.long 4\\n.long 4\\n.long 18\\n'
              '.asciz \\"Xen\\"\\n.balign 4\\n.long 0\\n.popsection\\n");\nvoid _start(void) {}\n')


@pytest.fixture
def pvh_bzimage(tmp_path):
    """A bzImage whose XZ payload is an ELF with the PVH entry note."""
    src = tmp_path / "note.c"
    src.write_text(PVH_NOTE_C)
    elf = tmp_path / "vmlinux"
    subprocess.run(["gcc", "-nostdlib", "-static", "-o", str(elf), str(src)], check=True, timeout=120)
    img = tmp_path / "bzImage"
    img.write_bytes(fake_bzimage(lzma.compress(elf.read_bytes(), format=lzma.FORMAT_XZ)))
    return img


@pytest.mark.fault
def test_the_vmlinux_is_a_stamped_artifact_reextracted_when_damaged(tmp_path, pvh_bzimage):
    paths, notes = Paths(tmp_path / "cache"), []
    out = pvh.pvh_vmlinux(pvh_bzimage, paths, log=notes.append)
    assert out is not None and pvh.has_pvh_note(out) and cache.problem(out) is None
    ident = out.stat().st_ino, out.stat().st_mtime_ns
    assert pvh.pvh_vmlinux(pvh_bzimage, paths, log=notes.append) == out  # reused as it is: snapshots name its mtime
    assert (out.stat().st_ino, out.stat().st_mtime_ns) == ident and notes == []
    out.write_bytes(out.read_bytes()[:100])  # damaged in the cache
    assert pvh.pvh_vmlinux(pvh_bzimage, paths, log=notes.append) == out and pvh.has_pvh_note(out)
    assert len(notes) == 1 and "is unusable" in notes[0] and "rebuilding it" in notes[0]


@pytest.mark.fault
def test_a_vmlinux_extracted_before_the_stamps_is_kept(tmp_path, pvh_bzimage):
    paths = Paths(tmp_path / "cache")
    out = pvh.pvh_vmlinux(pvh_bzimage, paths)
    cache.stamp_path(out).unlink()  # as an older pinharness left it
    ident = out.stat().st_ino, out.stat().st_mtime_ns
    assert pvh.pvh_vmlinux(pvh_bzimage, paths, log=pytest.fail) == out
    assert (out.stat().st_ino, out.stat().st_mtime_ns) == ident and cache.problem(out) is None


@pytest.mark.fault
def test_two_processes_extract_it_once(tmp_path, pvh_bzimage):
    """Two harnesses on one fresh cache: the second waits for the first's vmlinux and boots the same file."""
    script = ("import sys; from pathlib import Path; from harness.vm import pvh; from harness.vm.host import Paths; "
              "print(pvh.pvh_vmlinux(Path(sys.argv[1]), Paths(Path(sys.argv[2]))).stat().st_ino)")
    procs = [subprocess.Popen([sys.executable, "-c", script, str(pvh_bzimage), str(tmp_path / "cache")],
                              stdout=subprocess.PIPE, text=True) for _ in range(2)]
    inodes = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0] and inodes[0] == inodes[1]
