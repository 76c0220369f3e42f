"""Kernel identification and config handling without booting anything."""
from pathlib import Path

import pytest

from harness.vm import kernel as k
from harness.errors import KernelError
from harness.vm.host import Paths


def _fake_bzimage(path: Path, version: str) -> Path:
    data = bytearray(0x4000)
    data[0x202:0x206] = b"HdrS"
    ptr = 0x1000 - 0x200
    data[0x20E:0x210] = ptr.to_bytes(2, "little")
    data[0x1000:0x1000 + len(version) + 1] = version.encode() + b"\0"
    path.write_bytes(bytes(data))
    return path


def test_bzimage_release_from_setup_header(tmp_path):
    bz = _fake_bzimage(tmp_path / "bzImage", "6.1.0-56-amd64 (debian-kernel@lists.debian.org) #1 SMP")
    assert k.identify_image(bz) == "bzimage"
    assert k.bzimage_release(bz) == "6.1.0-56-amd64"


def test_not_a_kernel_is_a_one_line_error(tmp_path):
    junk = tmp_path / "notes.txt"
    junk.write_text("hello\n" * 200)
    with pytest.raises(KernelError, match="is not a kernel image") as exc:
        k.from_image(junk)
    assert "\n" not in str(exc.value)
    with pytest.raises(KernelError, match="does not exist"):
        k.from_image(tmp_path / "missing")


def test_tree_without_build_says_how_to_build(tmp_path):
    (tmp_path / "Makefile").write_text("")
    (tmp_path / "Kconfig").write_text("")
    with pytest.raises(KernelError, match="has no build"):
        k.from_tree(tmp_path, Paths(tmp_path / "cache"))
    with pytest.raises(KernelError, match="not a kernel tree"):
        k.from_tree(tmp_path / "..", Paths(tmp_path / "cache"))


def test_built_tree_without_modules(tmp_path):
    boot = tmp_path / "arch" / "x86" / "boot"
    boot.mkdir(parents=True)
    _fake_bzimage(boot / "bzImage", "6.13.0-rc1 #3")
    (tmp_path / ".config").write_text("CONFIG_EXT4_FS=y\n# CONFIG_MODULES is not set\nCONFIG_LOCALVERSION=\"\"\n")
    (tmp_path / "include" / "config").mkdir(parents=True)
    (tmp_path / "include" / "config" / "kernel.release").write_text("6.13.0-rc1\n")
    kern = k.from_tree(tmp_path, Paths(tmp_path / "cache"))
    assert kern.release == "6.13.0-rc1" and kern.modules_dir is None
    assert kern.has_config("EXT4_FS") and not kern.has_config("CONFIG_MODULES")
    assert kern.missing_config("EXT4_FS", "VFIO_PCI") == ["CONFIG_VFIO_PCI"]
    assert kern.version_tuple == (6, 13, 0)


def test_parse_config():
    cfg = k.parse_config('CONFIG_A=y\nCONFIG_B=m\n# CONFIG_C is not set\nCONFIG_S="x y"\nCONFIG_N=5\n')
    assert cfg == {"CONFIG_A": "y", "CONFIG_B": "m", "CONFIG_C": "n", "CONFIG_S": "x y", "CONFIG_N": "5"}


def test_ikconfig_from_elf(tmp_path):
    import gzip
    blob = b"\x00" * 100 + b"IKCFG_ST" + gzip.compress(b"CONFIG_IKCONFIG=y\n") + b"IKCFG_ED" + b"\x00" * 10
    f = tmp_path / "vmlinux"
    f.write_bytes(blob)
    assert k.ikconfig_from_elf(f) == "CONFIG_IKCONFIG=y\n"


def test_elf_vmlinux_release_and_build_id(tmp_path):
    import subprocess
    src = tmp_path / "v.c"
    src.write_text('const char linux_banner[] = "Linux version 6.13.0-ph (me@host) #1 SMP";\n'
                   'int main(void) { return linux_banner[0]; }\n')
    elf = tmp_path / "vmlinux"
    subprocess.run(["gcc", "-Wl,--build-id=sha1", "-o", str(elf), str(src)], check=True, timeout=120)
    info = k.elf_info(elf)
    assert info["release"] == "6.13.0-ph"
    assert info["build_id"] and len(info["build_id"]) == 40
    kern = k.from_image(elf)
    assert k.identify_image(elf) == "elf" and kern.release == "6.13.0-ph"
    assert kern.vmlinux == elf.resolve() and kern.build_id == info["build_id"]


def test_host_setup_sees_not_installed_packages_as_missing():
    from harness.vm.host import installed_packages
    out = "bc install ok installed\nflex unknown ok not-installed\nbison deinstall ok config-files\n"
    assert installed_packages(out) == {"bc"}
