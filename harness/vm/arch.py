"""Guest architectures: what differs between an x86-64 and an arm64 guest, as one table.

A kernel spec names its architecture with a suffix (``debian:6.1@arm64``; none means x86_64),
and ``--arch`` on the command line adds that suffix to every kernel. Everything downstream
(QEMU machine, console device, Debian package names, cross compiler, guest image) reads the
``Arch`` row instead of testing the name.
"""
from __future__ import annotations

import platform
from pathlib import Path
from dataclasses import dataclass
from typing import Optional

from harness.errors import HarnessError


@dataclass(frozen=True)
class Arch:
    name: str  # the harness's name: x86_64 | arm64
    debian: str  # Debian's architecture: amd64 | arm64
    uname: str  # `uname -m` of such a host: x86_64 | aarch64
    qemu_binary: str
    qemu_package: str  # the Debian package that has qemu_binary
    machine: str  # -machine value
    iommu_machine: str  # appended to -machine when a workload wants an IOMMU ("" = a device instead)
    iommu_device: str  # -device value for the IOMMU ("" = a machine property instead)
    iommu_cmdline: tuple[str, ...]  # kernel words that turn the IOMMU on
    iommu_kconfig: str  # the CONFIG_ option of that IOMMU's driver
    nested_machine: str  # appended to -machine when a workload runs KVM in the guest ("" = the CPU model has it)
    tcg_cpu: str  # -cpu under TCG
    console: str  # the serial console device
    cmdline: tuple[str, ...]  # kernel words every boot of this arch gets
    pvh: bool  # an x86 bzImage's vmlinux can be booted through PVH
    hotplug_globals: tuple[str, ...]  # -global values snapshots' hotplug ports need
    vmgenid: bool  # QEMU's vmgenid device reaches the guest (ACPI): snapshots can reseed its RNG
    cross_prefix: str  # the gcc prefix that builds for it on an x86-64 host ("" = the host's gcc)
    cross_packages: tuple[str, ...]  # Debian packages that give that compiler and libc
    image_magic: tuple[int, bytes]  # (offset, bytes) that identify a bootable kernel image
    initramfs_modules: tuple[str, ...]  # modules the initramfs loads (those absent are skipped)
    tree_image: str  # the bootable image in a built kernel tree
    kbuild_arch: str  # make ARCH=
    srcarch: str  # the tree's arch/<srcarch>/ directory


ARCHES: dict[str, Arch] = {
    "x86_64": Arch(
        name="x86_64", debian="amd64", uname="x86_64",
        qemu_binary="qemu-system-x86_64", qemu_package="qemu-system-x86", machine="q35",
        iommu_machine="", iommu_device="intel-iommu", iommu_cmdline=("intel_iommu=on",), iommu_kconfig="INTEL_IOMMU",
        nested_machine="",  # -cpu max offers SVM
        tcg_cpu="max", console="ttyS0", cmdline=("tsc=reliable",), pvh=True,
        hotplug_globals=("ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off",), vmgenid=True,
        cross_prefix="", cross_packages=("gcc", "libc6-dev"),
        image_magic=(0x202, b"HdrS"),
        initramfs_modules=("virtio_pci", "virtio_blk", "virtio_net", "crc32c_generic", "crc32c_intel", "crc16",
                           "ext4"),
        tree_image="arch/x86/boot/bzImage", kbuild_arch="x86_64", srcarch="x86"),
    # -cpu max emulates pointer authentication, which makes TCG ~4x slower (10.0 s vs 2.3 s to
    # userspace); GICv3 because VFIO's type1 attach wants interrupt remapping (its ITS) behind the SMMUv3
    "arm64": Arch(
        name="arm64", debian="arm64", uname="aarch64",
        qemu_binary="qemu-system-aarch64", qemu_package="qemu-system-arm", machine="virt,gic-version=3",
        iommu_machine="iommu=smmuv3", iommu_device="", iommu_cmdline=(), iommu_kconfig="ARM_SMMU_V3",
        nested_machine="virtualization=on",  # EL2: the guest kernel boots in hyp mode and runs KVM
        tcg_cpu="max,pauth=off", console="ttyAMA0", cmdline=(), pvh=False,
        hotplug_globals=(), vmgenid=False,
        cross_prefix="aarch64-linux-gnu-", cross_packages=("gcc-aarch64-linux-gnu", "libc6-dev-arm64-cross"),
        image_magic=(0x38, b"ARM\x64"),
        initramfs_modules=("virtio_pci", "virtio_blk", "virtio_net", "crc32c_generic", "crc16", "ext4"),
        tree_image="arch/arm64/boot/Image", kbuild_arch="arm64", srcarch="arm64"),
}
DEFAULT = "x86_64"
ALIASES = {"amd64": "x86_64", "x86-64": "x86_64", "aarch64": "arm64"}


def get(name: Optional[str]) -> Arch:
    """The row of ``name`` (or an alias: amd64, aarch64); a one-line error naming the known ones."""
    key = ALIASES.get(name or DEFAULT, name or DEFAULT)
    if key not in ARCHES:
        raise HarnessError(f"unknown architecture {name!r}: use one of {', '.join(ARCHES)}")
    return ARCHES[key]


def host() -> Optional[Arch]:
    """The host's own architecture, when it is one the harness knows."""
    m = platform.machine()
    return next((a for a in ARCHES.values() if a.uname == m), None)


def split_spec(spec: str) -> tuple[str, Arch]:
    """'debian:6.1@arm64' -> ('debian:6.1', arm64); no suffix -> x86_64. A path that exists with
    its '@' (``tree:/builds/linux@v6.1``) is a path, not a suffix."""
    base, sep, name = spec.rpartition("@")
    if not sep or "/" in name or Path(spec.split(":", 1)[1] if spec.startswith(("tree:", "image:")) else spec).exists():
        return spec, ARCHES[DEFAULT]
    return base, get(name)


def with_arch(spec: str, arch: str) -> str:
    """``spec`` for ``arch``: the suffix added (x86_64 adds none), a conflicting one refused."""
    base, have = split_spec(spec)
    want = get(arch)
    if base != spec and have.name != want.name:
        raise HarnessError(f"kernel {spec} names {have.name} but --arch asks for {want.name}: drop one of them")
    return base if want.name == DEFAULT else f"{base}@{want.name}"
