"""arm64 guests: the architecture table and what reads it (specs, Debian names, images, QEMU argv, oracle)."""
import gzip
import struct
import zlib
from pathlib import Path

import pytest

from harness.errors import HarnessError, KernelError
from harness.pins import oracle
from harness.pins.workloads import WORKLOADS, needed_config
from harness.vm import arch as arch_mod
from harness.vm import debian
from harness.vm import kernel as k
from harness.vm import kernel_image as ki
from harness.vm.qemu import QemuConfig, build_argv
from harness.vm.vm import VMOptions, kernel_cmdline


def _opt(argv, flag):
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


@pytest.mark.parametrize("spec,base,arch", [
    ("debian:6.1", "debian:6.1", "x86_64"), ("debian:6.1@arm64", "debian:6.1", "arm64"),
    ("debian:sid@aarch64", "debian:sid", "arm64"), ("tree:/src/linux@arm64", "tree:/src/linux", "arm64"),
    ("/home/me/a@b/bzImage", "/home/me/a@b/bzImage", "x86_64"),  # an @ inside a path is not a suffix
])
def test_specs_name_their_architecture_with_a_suffix(spec, base, arch):
    got_base, row = arch_mod.split_spec(spec)
    assert (got_base, row.name) == (base, arch)


def test_a_directory_that_exists_with_its_at_is_a_path_not_a_suffix(tmp_path):
    """`tree:DIR` of a directory named like `linux@v6.1` or `...@arm64` is that directory."""
    for name in ("linux@v6.1", "build@arm64"):
        (tmp_path / name).mkdir()
        for spec in (f"tree:{tmp_path / name}", str(tmp_path / name)):
            assert arch_mod.split_spec(spec) == (spec, arch_mod.ARCHES["x86_64"])
    assert arch_mod.split_spec(f"tree:{tmp_path / 'other'}@arm64")[1].name == "arm64"  # no such dir: a suffix
    named = arch_mod.with_arch(f"tree:{tmp_path / 'build@arm64'}", "arm64")
    assert named == f"tree:{tmp_path / 'build@arm64'}@arm64"
    assert arch_mod.split_spec(named) == (f"tree:{tmp_path / 'build@arm64'}", arch_mod.ARCHES["arm64"])


def test_with_arch_adds_the_suffix_and_refuses_a_conflict():
    assert arch_mod.with_arch("debian:6.1", "arm64") == "debian:6.1@arm64"
    assert arch_mod.with_arch("debian:6.1", "x86_64") == "debian:6.1"
    assert arch_mod.with_arch("debian:6.1@arm64", "arm64") == "debian:6.1@arm64"
    with pytest.raises(HarnessError, match="names arm64 but --arch asks for x86_64"):
        arch_mod.with_arch("debian:6.1@arm64", "x86_64")
    with pytest.raises(HarnessError, match="unknown architecture 'sparc'"):
        arch_mod.get("sparc")


def test_every_architecture_row_is_complete():
    for row in arch_mod.ARCHES.values():
        assert row.qemu_binary and row.console and row.tcg_cpu and row.cross_packages and row.tree_image
        assert "virtio_blk" in row.initramfs_modules and "ext4" in row.initramfs_modules
        assert bool(row.iommu_machine) != bool(row.iommu_device)  # an IOMMU one way or the other


def _cfg(arch, **kw):
    return QemuConfig(kernel=Path("/k/Image"), append=["console=ttyAMA0"], console_log=Path("/a/c.log"),
                      qmp_socket=Path("/tmp/q.sock"), arch=arch_mod.get(arch), **kw)


def test_arm64_argv_is_virt_with_gicv3_pauth_off_and_smmuv3_on_demand():
    argv = build_argv(_cfg("arm64", hotplug_ports=2, vmgenid=True))
    assert argv[0] == "qemu-system-aarch64"
    assert _opt(argv, "-machine") == ["virt,gic-version=3"]
    assert _opt(argv, "-cpu") == ["max,pauth=off"]
    assert "intel-iommu" not in argv and "ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off" not in argv
    assert not any(a.startswith("vmgenid") for a in argv)  # no ACPI: QEMU's vmgenid does not reach the guest
    with_iommu = build_argv(_cfg("arm64", iommu=True))
    assert _opt(with_iommu, "-machine") == ["virt,gic-version=3,iommu=smmuv3"]
    x86 = build_argv(_cfg("x86_64", iommu=True))
    assert _opt(x86, "-machine") == ["q35"] and "intel-iommu" in _opt(x86, "-device")


def test_arm64_kernel_command_line_uses_its_console_and_no_intel_iommu():
    words = kernel_cmdline(VMOptions(iommu=True), None, False, arch=arch_mod.get("arm64"))
    assert "console=ttyAMA0,115200" in words
    assert "intel_iommu=on" not in words and "tsc=reliable" not in words
    x86 = kernel_cmdline(VMOptions(iommu=True), None, False)
    assert "console=ttyS0,115200" in x86 and "intel_iommu=on" in x86


@pytest.mark.parametrize("arch,release,ok", [
    ("amd64", "6.1.0-57-amd64", True), ("arm64", "6.1.0-57-arm64", True), ("arm64", "7.2.13+deb14-arm64", True),
    ("arm64", "6.1.0-57-amd64", False), ("amd64", "6.1.0-57-arm64", False), ("arm64", "6.1.0-57-arm64-16k", False),
    ("arm64", "6.1.0-57-cloud-arm64", False),
])
def test_debian_release_names_per_architecture(arch, release, ok):
    assert bool(debian.release_re(arch).fullmatch(release)) is ok


def test_debian_arm64_packages_of_both_packagings_are_grouped():
    suite = debian.Suite("sid", "debian", "sid")
    st = [{"Package": p, "Version": "7.2.13-1", "Filename": f"pool/{p}.deb", "Size": "1", "SHA256": "0"}
          for p in ("linux-binary-unsigned-7.2.13+deb14-arm64", "linux-modules-7.2.13+deb14-arm64",
                    "linux-base-7.2.13+deb14-arm64", "linux-image-6.1.0-57-arm64-unsigned",
                    "linux-image-6.1.0-57-amd64-unsigned")]
    got = {kern.release: kern.layout for kern in debian.kernels_of(st, suite, "arm64")}
    assert got == {"7.2.13+deb14-arm64": "split", "6.1.0-57-arm64": "image"}
    text = "\n\n".join(f"Package: {p}\nVersion: 1\nFilename: f\nSize: 1\nSHA256: 0" for p in
                       ("busybox-static", "busybox", "libibverbs1", "linux-image-6.1.0-57-arm64-unsigned"))
    kept = [s["Package"] for s in debian.parse_stanzas(text)]
    assert kept == ["busybox-static", "libibverbs1", "linux-image-6.1.0-57-arm64-unsigned"]


def _arm64_image(path: Path, size: int = 1 << 16, sections=((0x1000, 0x4000),), banner: bytes = b"") -> Path:
    """An arm64 Image header with a PE/COFF section table (an EFI stub kernel's layout)."""
    data = bytearray(size)
    data[0:2] = b"MZ"
    data[ki.ARM64_MAGIC_OFFSET:ki.ARM64_MAGIC_OFFSET + 4] = ki.ARM64_MAGIC
    pe = 0x40
    struct.pack_into("<I", data, 0x3C, pe)
    data[pe:pe + 4] = b"PE\0\0"
    struct.pack_into("<H", data, pe + 6, len(sections))
    struct.pack_into("<H", data, pe + 20, 0x70)  # size of the optional header
    table = pe + 24 + 0x70
    for i, (ptr, raw) in enumerate(sections):
        struct.pack_into("<II", data, table + i * 40 + 16, raw, ptr)
    data[0x8000:0x8000 + len(banner)] = banner
    path.write_bytes(bytes(data))
    return path


def test_arm64_image_is_checked_whole_and_its_release_read(tmp_path):
    img = _arm64_image(tmp_path / "Image", banner=b"Linux version 6.1.0-57-arm64 (debian-kernel@lists) #1 SMP")
    assert ki.kind(img, "arm64") == "image" and ki.arch_of(img) == "arm64"
    kern = k.from_image(img)
    assert (kern.arch, kern.release) == ("arm64", "6.1.0-57-arm64")
    cut = _arm64_image(tmp_path / "cut", size=0x3000)
    with pytest.raises(KernelError, match=r"is truncated: 12288 bytes, PE section 0 ends at 20480"):
        ki.kind(cut, "arm64")


@pytest.mark.parametrize("maker,what", [
    (lambda p: p.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(9) + struct.pack("<HH", 2, 183) + bytes(100)),
     "an ELF AArch64 vmlinux"),
    (lambda p: p.write_bytes(bytes(0x202) + b"HdrS" + bytes(0x300)), "an x86-64 bzImage, not an arm64 kernel"),
    (lambda p: p.write_bytes(b"not a kernel" * 100), "is not an arm64 kernel Image"),
])
def test_an_arm64_guest_names_what_it_was_given_instead(tmp_path, maker, what):
    path = tmp_path / "kernel"
    maker(path)
    with pytest.raises(KernelError) as exc:
        ki.kind(path, "arm64")
    assert what in str(exc.value) and "\n" not in str(exc.value)


def _zboot(path: Path, payload: bytes, comp: bytes = b"gzip") -> Path:
    head = bytearray(0x40)
    head[0:4] = b"MZ\0\0"
    head[4:8] = ki.ZBOOT_TYPE
    struct.pack_into("<II", head, 8, 0x40, len(payload))
    head[24:24 + len(comp)] = comp
    path.write_bytes(bytes(head) + payload)
    return path


def test_a_zboot_or_gzip_kernel_is_unpacked_once_into_an_image(tmp_path):
    inner = _arm64_image(tmp_path / "inner").read_bytes()
    gz = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zboot = _zboot(tmp_path / "vmlinuz.efi", gz.compress(inner) + gz.flush())
    out = ki.bootable(zboot, "arm64", tmp_path / "cache")
    assert out.read_bytes() == inner and ki.kind(out, "arm64") == "image"
    assert ki.bootable(zboot, "arm64", tmp_path / "cache") == out  # cached
    gzipped = tmp_path / "Image.gz"
    gzipped.write_bytes(gzip.compress(inner))
    assert ki.bootable(gzipped, "arm64", tmp_path / "c2").read_bytes() == inner
    assert ki.bootable(zboot, "x86_64", tmp_path / "c3") == zboot  # x86 images are booted as they are
    bad = _zboot(tmp_path / "bad.efi", b"\x1f\x8b garbage")
    with pytest.raises(KernelError, match="does not unpack"):
        ki.bootable(bad, "arm64", tmp_path / "c4")


def test_oracle_rows_can_name_an_architecture():
    row = oracle.Expectation("<6.5 arch=arm64", "vfio", "ext4", "*", "CLEAN", False, "test", ())
    assert oracle.expectation((6, 1), "vfio", "ext4", ("reclaim",), table=[row], arch="arm64") is row
    assert oracle.expectation((6, 1), "vfio", "ext4", ("reclaim",), table=[row], arch="x86_64") is None
    assert oracle.kernel_matches("<6.5 arch=arm64", (6, 1), arch="arm64")
    assert not oracle.kernel_matches("<6.5 arch=arm64", (6, 1), arch="x86_64")
    assert oracle.kernel_matches("<6.5", (6, 1), arch="arm64")  # no arch= holds on every architecture


def test_the_iommu_a_workload_needs_is_the_architectures():
    assert "INTEL_IOMMU" in needed_config(WORKLOADS["vfio"], "x86_64")
    assert "ARM_SMMU_V3" in needed_config(WORKLOADS["vfio"], "arm64")
    assert "ARM_SMMU_V3" not in needed_config(WORKLOADS["odirect"], "arm64")
    assert "arm64" in WORKLOADS["kvm"].arches and WORKLOADS["kvm"].vm.get("nested")


def test_a_guest_that_runs_kvm_gets_el2_on_arm64_and_nothing_more_on_x86():
    assert _opt(build_argv(_cfg("arm64", nested=True)), "-machine") == ["virt,gic-version=3,virtualization=on"]
    assert _opt(build_argv(_cfg("x86_64", nested=True)), "-machine") == ["q35"]  # -cpu max has SVM


def test_a_tree_is_made_with_its_own_architecture():
    """`make modules_install` in an arm64 build directory gets ARCH=arm64 and the cross compiler: with
    the host's default ARCH, Kbuild would read the tree with x86's Makefile."""
    arm = k.tree_make_argv(Path("/b"), arch_mod.get("arm64"), "modules_install", "INSTALL_MOD_PATH=/m")
    assert arm == ["make", "-s", "-C", "/b", "ARCH=arm64", "CROSS_COMPILE=aarch64-linux-gnu-", "modules_install",
                   "INSTALL_MOD_PATH=/m"]
    x86 = k.tree_make_argv(Path("/b"), arch_mod.get("x86_64"), "modules_install")
    assert x86 == ["make", "-s", "-C", "/b", "ARCH=x86_64", "modules_install"]
