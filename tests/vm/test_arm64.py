"""arm64 guests under TCG (qemu-system-aarch64 -M virt): Debian's arm64 kernels boot the arm64 guest
image built through qemu-user, cross-compiled workloads run in them, and their traces are parsed
into the same titles as on x86. An arm64 guest always boots afresh (no vmgenid without ACPI)."""
import json

import pytest

from harness.pytest_plugin import check_cell

pytestmark = pytest.mark.vm

ARM64_61 = "debian:6.1@arm64"
CELLS = [  # (kernel, workload, stressors, fs): what bench runs measured on arm64 (README, arm64 table)
    (ARM64_61, "odirect", "reclaim", "ext4"),  # KNOWN-BUG: WARNING in ext4_dirty_folio + all pages lost
    ("debian:6.12@arm64", "vfio", "bh-fill+reclaim", "ext4"),  # SMMUv3: the long-term pin is refused
]


@pytest.mark.parametrize("kernel_spec", [ARM64_61], ids=["debian-6.1-arm64"], scope="session")
def test_arm64_guest_boots_its_own_kernel_and_image(vm, kernel, kernel_spec):
    assert kernel.arch == "arm64" and kernel.release.endswith("-arm64")
    out = vm.run("uname -m; uname -r; head -c 4 /bin/bash | od -An -c; cat /proc/cmdline", timeout=60,
                 check=True).stdout.split("\n")
    assert out[0] == "aarch64" and out[1] == kernel.release
    assert "E   L   F" in out[2]
    assert "console=ttyAMA0" in out[3]
    summary = json.loads((vm.workdir / "vm.json").read_text())
    assert summary["snapshot"] is None  # booted afresh: no vmgenid on arm64's virt
    argv = json.loads((vm.workdir / "qemu-argv.json").read_text())
    assert argv[0].endswith("qemu-system-aarch64") and "virt,gic-version=3" in argv


@pytest.mark.parametrize("kernel_spec,workload,stressors,fs_type", CELLS,
                         ids=[f"{k.split(':')[1]}-{w}-{fs}-{s}" for k, w, s, fs in CELLS], scope="session")
def test_arm64_cell(request, ph_session, kernel, kernel_spec, workload, stressors, fs_type):
    assert kernel.arch == "arm64"
    check_cell(request, ph_session, kernel, kernel_spec, workload, fs_type, stressors, subdir="arm64")
