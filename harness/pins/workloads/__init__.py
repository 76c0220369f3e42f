"""Pin workloads: C programs in this directory, built on the host with gcc
(static), uploaded into the guest and run against a file on the scratch fs.

The table ``WORKLOADS`` is the knowledge: what each needs from the kernel and
the VM. ``run_workload`` is the one flow they all share: prepare stressors,
run the program (one JSON line out), verify the data on disk after the guest
dropped its cache, collect the console slice.
"""
from __future__ import annotations

import hashlib
import json
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from harness.errors import HarnessError
from harness.vm.host import Paths, require_tool
from harness.vm.image import Disk

HERE = Path(__file__).resolve().parent
PAGE = 4096
GUEST_DIR = "/root/ph"
CGROUP = "/sys/fs/cgroup/pinharness"
SOURCE_SERIAL = "ph-source"
FILL_SERIAL = "ph-bhfill"
SOURCE_EXTRA_PAGES = 64  # pages the source disk holds past the file's (the odirect reads that keep it busy)
# the workload's memory cgroup (cgroup v2 mounted at /sys/fs/cgroup), made before each run
CGROUP_SETUP = (f"mkdir -p {CGROUP} && (grep -qw memory /sys/fs/cgroup/cgroup.subtree_control || "
                f"echo +memory > /sys/fs/cgroup/cgroup.subtree_control)")


@dataclass(frozen=True)
class WorkloadSpec:
    name: str
    source: str  # C file in this directory
    description: str
    kconfig: tuple[str, ...] = ()  # needed CONFIG_ options (y or m)
    source_disk: bool = True  # a throttled read-only disk holding pattern B: the "device"
    source_iops: int = 1  # throttling.iops-read of that disk (slow device = long-held pages)
    vm: dict = field(default_factory=dict)  # VMOptions overrides
    args: tuple[str, ...] = ()  # extra program arguments
    default_stressors: tuple[str, ...] = ("none",)
    prepare: str = ""  # guest shell run first; prints extra "key=value" program arguments
    static: bool = True  # link statically (else against the guest's libraries, same Debian release)
    libs: tuple[str, ...] = ()  # extra link flags
    lib_packages: tuple[str, ...] = ()  # Debian packages with those libraries (fetched for a cross build)
    partial_pages: bool = False  # the device writes a region of each page; verify checks that region
    tools: tuple[str, ...] = ()  # commands ``prepare`` runs beyond a shell's basics (a repro's initramfs copies them)
    arches: tuple[str, ...] = ("x86_64", "arm64")  # guest architectures it runs on (harness.vm.arch)
    # what mode=verify compares the disk with: "patterns" (pattern A/B pages: B = the device's writes) or
    # "record" (each page's last written number, which the run saved on the guest's root fs; B = pages holding it)
    check: str = "patterns"
    in_default_matrix: bool = True  # False: `run` runs it only when --workload names it


VFIO_PREPARE = r"""
set -e
modprobe vfio-pci
dev=$(for d in /sys/bus/pci/devices/*; do
  [ "$(cat $d/vendor)" = 0x1234 ] && [ "$(cat $d/device)" = 0x11e8 ] && echo ${d##*/}; done | head -n1)
[ -n "$dev" ] || { echo "no edu PCI device (1234:11e8)" >&2; exit 1; }
# a q35 vIOMMU without interrupt remapping: type1 refuses (EPERM) unless told it's fine (a test guest)
p=/sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts
modprobe vfio_iommu_type1 allow_unsafe_interrupts=1 2>/dev/null || true
[ -w $p ] && echo Y > $p
echo vfio-pci > /sys/bus/pci/devices/$dev/driver_override
if [ -e /sys/bus/pci/devices/$dev/driver ]; then echo $dev > /sys/bus/pci/devices/$dev/driver/unbind; fi
echo $dev > /sys/bus/pci/drivers_probe
grp=$(basename "$(readlink /sys/bus/pci/devices/$dev/iommu_group)")
[ -e /dev/vfio/$grp ] || { echo "no /dev/vfio/$grp: vfio-pci did not bind $dev" >&2; exit 1; }
echo device=$dev group=$grp
"""

RDMA_PREPARE = r"""
set -e
modprobe crc32_generic 2>/dev/null || true
modprobe dummy
modprobe rdma_rxe
ip link show dummy0 >/dev/null 2>&1 || ip link add dummy0 type dummy
ip link set dummy0 up
rdma link show rxe0 >/dev/null 2>&1 || rdma link add rxe0 type rxe netdev dummy0
for i in $(seq 1 100); do [ -e /sys/class/infiniband/rxe0/ports/1/gids/0 ] && break; sleep 0.1; done
echo dev=rxe0 gid=0
"""


AF_XDP_PREPARE = r"""
set -e
modprobe veth
ip link show veth0 >/dev/null 2>&1 || ip link add veth0 type veth peer name veth1
ip link set veth0 up
ip link set veth1 up
echo ifname=veth0 peer=veth1
"""


KVM_PREPARE = r"""
set -e
if [ "$(uname -m)" = x86_64 ]; then
  grep -qw svm /proc/cpuinfo || grep -qw vmx /proc/cpuinfo || { echo "the guest CPU has no SVM/VMX" >&2; exit 1; }
  modprobe kvm_amd 2>/dev/null || modprobe kvm_intel
fi
[ -e /dev/kvm ] || { echo "no /dev/kvm in the guest (arm64: not booted at EL2, see dmesg 'kvm')" >&2; exit 1; }
"""

VHOST_NET_PREPARE = r"""
modprobe tun 2>/dev/null
modprobe vhost_net 2>/dev/null
[ -e /dev/vhost-net ] || { echo "no /dev/vhost-net (CONFIG_VHOST_NET)" >&2; exit 1; }
[ -e /dev/net/tun ] || { echo "no /dev/net/tun (CONFIG_TUN)" >&2; exit 1; }
echo tap=phtap0
"""


VHOST_VDPA_PREPARE = r"""
modprobe vhost_vdpa 2>/dev/null
modprobe vdpa_sim_net 2>/dev/null
[ -d /sys/bus/vdpa/devices/vdpa0 ] || vdpa dev add name vdpa0 mgmtdev vdpasim_net || exit 1
d=
for i in $(seq 1 50); do
  d=$(ls /sys/bus/vdpa/devices/vdpa0/ | grep -m1 '^vhost-vdpa-') && [ -e /dev/$d ] && break
  d=; sleep 0.1
done
[ -n "$d" ] || { echo "vdpa0 got no /dev/vhost-vdpa-N: vhost_vdpa did not bind it" >&2; exit 1; }
echo dev=/dev/$d
"""


WORKLOADS: dict[str, WorkloadSpec] = {
    "odirect": WorkloadSpec(
        "odirect", "odirect.c",
        "O_DIRECT read from a slow device into the MAP_SHARED mapping; fsync + memory.reclaim meanwhile",
        kconfig=("MEMCG",), default_stressors=("reclaim",)),
    "io_uring": WorkloadSpec(
        "io_uring", "io_uring.c",
        "io_uring fixed-buffer registration of the mapping (FOLL_LONGTERM pin); READ_FIXED writes if allowed",
        kconfig=("IO_URING",), source_iops=0),
    "vfio": WorkloadSpec(
        "vfio", "vfio.c",
        "VFIO type1 DMA map of the mapping (vIOMMU + QEMU edu device); edu DMA-writes while writeback/reclaim run",
        kconfig=("VFIO_PCI", "VFIO_IOMMU_TYPE1", "MEMCG"), source_disk=False,
        vm={"memory_mb": 512, "iommu": True, "devices": ("edu",)}, default_stressors=("bh-fill", "reclaim"),
        prepare=VFIO_PREPARE, tools=("modprobe",)),
    "rdma": WorkloadSpec(
        "rdma", "rdma.c",
        "soft-RoCE (rdma_rxe) ibv_reg_mr of the mapping; an RDMA WRITE over a loopback RC QP writes into it",
        kconfig=("RDMA_RXE", "INFINIBAND_USER_ACCESS", "MEMCG"), source_disk=False, vm={"memory_mb": 512},
        default_stressors=("bh-fill", "reclaim"), prepare=RDMA_PREPARE, tools=("modprobe", "ip", "rdma"), static=False,
        libs=("-libverbs",), lib_packages=("libibverbs-dev", "libibverbs1")),
    "af_xdp": WorkloadSpec(
        "af_xdp", "af_xdp.c",
        "AF_XDP umem registration of the mapping (syzbot's path); frames from a veth peer are copied into it",
        kconfig=("XDP_SOCKETS", "BPF_SYSCALL", "VETH", "MEMCG"), source_disk=False, vm={"memory_mb": 512},
        default_stressors=("bh-fill", "reclaim"), prepare=AF_XDP_PREPARE, tools=("modprobe", "ip"),
        partial_pages=True),
    "kvm": WorkloadSpec(
        "kvm", "kvm.c",
        "a minimal L2 VM (nested KVM) whose memory is the mapping: KVM's secondary MMU writes it across writeback",
        kconfig=("KVM", "MEMCG"), source_disk=False, vm={"nested": True}, default_stressors=("bh-fill", "reclaim"),
        prepare=KVM_PREPARE, tools=("modprobe", "uname")),
    "vhost_net": WorkloadSpec(
        "vhost_net", "vhost_net.c",
        "vhost-net with its receive ring and buffers in the mapping (tap backend); the vhost worker writes "
        "received frames into it with uaccess, no pin",
        kconfig=("VHOST_NET", "TUN", "MEMCG"), source_disk=False, vm={"memory_mb": 512},
        default_stressors=("bh-fill", "reclaim"), prepare=VHOST_NET_PREPARE, tools=("modprobe",),
        partial_pages=True),
    "vhost_vdpa": WorkloadSpec(
        "vhost_vdpa", "vhost_vdpa.c",
        "vhost-vdpa IOTLB map of the mapping (FOLL_LONGTERM pin) as vdpa_sim_net's receive buffers; "
        "the simulator loops transmitted frames into them",
        # vdpa_sim's use_va (v6.3+, on by default) maps user VAs without pinning: the PA mode pins
        kconfig=("VHOST_VDPA", "VDPA_SIM_NET", "MEMCG"), source_disk=False,
        vm={"memory_mb": 512, "cmdline": ("vdpa_sim.use_va=0",)},
        default_stressors=("bh-fill", "reclaim"), prepare=VHOST_VDPA_PREPARE,
        tools=("modprobe", "vdpa"), partial_pages=True),
    "iommufd": WorkloadSpec(
        "iommufd", "iommufd.c",
        "iommufd IOAS map of the mapping with a mock domain attached (CONFIG_IOMMUFD_TEST: FOLL_LONGTERM pin); "
        "an emulated device access writes it",
        kconfig=("IOMMUFD", "IOMMUFD_TEST", "MEMCG"), source_disk=False, vm={"memory_mb": 512},
        default_stressors=("bh-fill", "reclaim")),
    "mkclean_race": WorkloadSpec(
        "mkclean_race", "mkclean_race.c",
        "no pin: writer threads on vCPU 0 store sequence numbers into every page of the mapping nonstop while "
        "vCPU 1 cleans and write-protects its PTEs (msync, fsync, sync_file_range, MADV_PAGEOUT): the dirty-bit/TLB "
        "race; verify checks that every page on disk holds its last number",
        source_disk=False, vm={"cpus": 2}, args=("seconds=4", "writers=2"), check="record"),
    "mkclean_race_thp": WorkloadSpec(
        "mkclean_race_thp", "mkclean_race.c",
        "mkclean_race on a 2 MiB file mapped PMD-aligned with MADV_HUGEPAGE and read back from disk: large folios "
        "and PMD mappings where the kernel gives them (the run reports which)",
        kconfig=("TRANSPARENT_HUGEPAGE",), source_disk=False, vm={"cpus": 2},
        args=("seconds=4", "writers=2", "thp=1"), check="record", in_default_matrix=False),
    "gup_test": WorkloadSpec(
        "gup_test", "gup_test.c",
        "the kernel's GUP test device pins the mapping FOLL_LONGTERM|FOLL_WRITE and unpins it: the pin policy alone",
        kconfig=("GUP_TEST", "DEBUG_FS"), source_disk=False),
}


# the workloads `run` runs unless --workload names others
DEFAULT_WORKLOADS = tuple(n for n, spec in WORKLOADS.items() if spec.in_default_matrix)


def needed_config(spec: WorkloadSpec, arch: str = "x86_64") -> tuple[str, ...]:
    """The CONFIG_ options ``spec`` needs on ``arch``: its own, and the arch's IOMMU driver when it wants one."""
    from harness.vm import arch as arch_mod

    iommu = (arch_mod.get(arch).iommu_kconfig,) if spec.vm.get("iommu") else ()
    return tuple(dict.fromkeys(spec.kconfig + iommu))


def _pattern_page(tag: bytes, index: int) -> bytes:
    page = bytearray(tag * PAGE)
    page[0:8] = b"PINHARNS"
    page[8] = tag[0]
    page[9:16] = index.to_bytes(8, "little")[:7]
    return bytes(page)


def make_source_disk(directory: Path, pages: int, tag: bytes = b"B", extra_pages: int = SOURCE_EXTRA_PAGES) -> Path:
    """A disk image whose page i holds pattern ``tag`` with index i (what the device writes)."""
    path = Path(directory) / "source.img"
    with open(path, "wb") as f:
        for i in range(pages + extra_pages):
            f.write(_pattern_page(tag, i))
    return path


# --------------------------------------------------------------------------- build

def cross_lib_flags(spec: WorkloadSpec, row, paths: Paths) -> list[str]:
    """Compiler flags that find ``spec``'s libraries for a cross build: Debian's packages of that
    architecture unpacked in the cache (headers, and the .so the guest has; what those need in turn is
    the guest's business, so it is not resolved at link time)."""
    if not row.cross_prefix or not spec.lib_packages:
        return []
    from harness.vm.image import foreign_packages

    root = foreign_packages(spec.lib_packages, row.name, paths)
    libdir = root / "usr" / "lib" / row.cross_prefix.rstrip("-")
    return [f"-I{root / 'usr' / 'include'}", f"-L{libdir}", "-Wl,--unresolved-symbols=ignore-in-shared-libs"]


def build(name: str, paths: Paths, timeout: float = 300, arch: str = "x86_64") -> Path:
    """Compile workload ``name`` for ``arch`` with the host's gcc or cross gcc (statically unless the
    spec says otherwise); cached by source and compiler."""
    from harness.vm import arch as arch_mod

    spec = WORKLOADS[name]
    row = arch_mod.get(arch)
    if row.name not in spec.arches:
        raise HarnessError(f"workload {name} does not run on {row.name} (it runs on {', '.join(spec.arches)})")
    gcc = require_tool(f"{row.cross_prefix}gcc")
    srcs = [HERE / spec.source, *sorted(HERE.glob("*.h"))]
    h = hashlib.sha256()
    for s in srcs:
        h.update(s.read_bytes())
    h.update(subprocess.run([gcc, "--version"], capture_output=True, text=True, timeout=60).stdout.encode())
    out = paths.sub("workloads") / (f"{name}-{h.hexdigest()[:12]}" if row.name == arch_mod.DEFAULT
                                    else f"{name}-{row.name}-{h.hexdigest()[:12]}")
    if out.exists():
        return out
    tmp = out.with_suffix(".tmp")
    argv = [gcc, "-O2", "-Wall", "-pthread", *(["-static"] if spec.static else []), "-o", str(tmp),
            str(HERE / spec.source), *cross_lib_flags(spec, row, paths), *spec.libs]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        raise HarnessError(f"building workload {name} for {row.name} failed: {last} (are "
                           f"{' and '.join(row.cross_packages)} and libibverbs-dev installed? `python -m harness setup`)")
    tmp.rename(out)
    return out


# --------------------------------------------------------------------------- run

@dataclass
class WorkloadRun:
    """What one run of a workload produced (the raw material for the oracle)."""

    workload: str
    fs: str
    stressors: tuple[str, ...]
    result: dict  # the program's JSON line
    verify: dict  # on-disk pattern counts after the guest dropped its cache
    console: str  # the kernel console during the run
    stressor_notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    pins: dict = field(default_factory=dict)  # nr_foll_pin_* before/after
    data_check: bool = True  # False: a stressor rewrote the pinned range, lost pages are not counted

    @property
    def pin_errno(self) -> int:
        return int(self.result.get("pin", {}).get("errno", 0) or 0)

    @property
    def device_pages(self) -> int:
        """Pages the device wrote into the mapping (pattern B seen in memory)."""
        return int(self.result.get("device_wrote_B", 0) or 0)

    @property
    def lost_pages(self) -> int:
        """Pages the device wrote that did not reach the disk."""
        if self.pin_errno or not self.verify or not self.data_check:
            return 0
        return max(0, self.device_pages - int(self.verify.get("B", 0)))

    def to_dict(self) -> dict:
        return {"workload": self.workload, "fs": self.fs, "stressors": list(self.stressors), "result": self.result,
                "verify": self.verify, "data_check": self.data_check, "lost_pages": self.lost_pages, "pins": self.pins,
                "stressor_notes": self.stressor_notes, "seconds": round(self.seconds, 2)}


def workload_vm_options(spec: WorkloadSpec, stressors: tuple[str, ...]) -> dict:
    """VMOptions overrides a workload run needs: the workload's own, then its stressors'."""
    from harness.pins.stressors import stressor_vm_options

    return {**spec.vm, **stressor_vm_options(stressors)}


def workload_disks(spec: WorkloadSpec, workdir: Path, pages: int, stressors: tuple[str, ...]) -> list[Disk]:
    """Extra disks a workload needs attached at boot."""
    from harness.pins.stressors import stressor_disks

    disks: list[Disk] = []
    if spec.source_disk:
        disks.append(source_disk(spec, make_source_disk(workdir, pages)))
    disks += stressor_disks(stressors, workdir)
    return disks


def source_disk(spec: WorkloadSpec, path: Path) -> Disk:
    """The "device" disk (pattern B) at ``path``, throttled as the workload wants it."""
    extra = {"throttling.iops-read": spec.source_iops} if spec.source_iops else {}
    return Disk(path, SOURCE_SERIAL, readonly=True, extra=extra)


def workload_args(spec: WorkloadSpec, file: str, pages: int, stressors: tuple[str, ...], extra_args: list[str],
                  src: str = "") -> list[str]:
    """The program's arguments (``extra_args``: what the workload's ``prepare`` printed)."""
    args = [f"file={file}", f"pages={pages}", f"cgroup={CGROUP}",
            f"reclaim={1 if 'reclaim' in stressors else 0}", *spec.args, *extra_args]
    return args + ([f"src={src}"] if src else [])


def remount_command(fs: str, device: str, mountpoint: str) -> str:
    """Write back and drop the whole page cache of the scratch fs: a remount."""
    return f"sync && umount {mountpoint} && mount -t {fs} {device} {mountpoint}"


def verify_command(binary: str, file: str, pages: int) -> str:
    """Count the patterns on disk (O_DIRECT) after the remount: one JSON line."""
    return f"sync; echo 3 > /proc/sys/vm/drop_caches; {binary} mode=verify file={file} pages={pages}"


def _parse_json_line(text: str, what: str) -> dict:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                break
    raise HarnessError(f"{what} printed no JSON result: {text.strip()[-300:]!r}")


def _raise_if_gave_up(doc: dict, what: str) -> None:
    """The program's JSON line says it gave up (ph_die): a one-line error naming the step."""
    if "error" in doc:
        raise HarnessError(f"{what} failed at {doc['error']}: {doc.get('strerror', '')} (errno {doc.get('errno')})")


# nr_foll_pin_released can trail the syscall that took the pins: an O_DIRECT read into pages that
# are not dirty yet ends in bio_check_pages_dirty(), which defers dirtying and unpinning them to
# the bio_dirty_work workqueue. A sample taken right after such a read (the verify step's own, on
# 6.12) showed 16 acquired, 15 released: a "PIN-LEAK(1)" that was only early. So the counters are
# read until acquired == released, or for SETTLE_SECONDS, when whatever is left is a real leak.
SETTLE_SECONDS = 3.0
READ_PINS = ("for i in $(seq {n}); do s=$(grep -E '^nr_foll_pin_(acquired|released) ' /proc/vmstat); "
             "set -- $s; [ \"$2\" = \"$4\" ] && break; sleep 0.1; done; echo \"$s\"")


def read_pins(vm, settle: float = 0.0) -> dict:
    """nr_foll_pin_acquired/released; with ``settle``, waits (up to that long) for them to match."""
    n = max(1, int(settle * 10))
    out = vm.run(f"bash -c {shlex.quote(READ_PINS.format(n=n))}", timeout=30 + settle).stdout
    return {k: int(v) for k, v in (line.split() for line in out.splitlines() if line.strip())}


def run_workload(vm, name: str, fs: str, device: str, mountpoint: str, stressors: tuple[str, ...], paths: Paths,
                 pages: int = 16, timeout: float = 600) -> WorkloadRun:
    """Run workload ``name`` in a booted ``vm`` whose scratch fs (``device``) is mounted at ``mountpoint``."""
    import time

    from harness.pins.stressors import Stressors

    spec = WORKLOADS[name]
    binary = build(name, paths, arch=vm.kernel.arch)
    vm.run(f"mkdir -p {GUEST_DIR}", timeout=30, check=True)
    vm.put(binary, f"{GUEST_DIR}/{name}", mode=0o755)
    src = ""
    if spec.source_disk:
        src = vm.disk(SOURCE_SERIAL)
    vm.run(CGROUP_SETUP, timeout=30, check=True)
    extra_args: list[str] = []
    if spec.prepare:
        prep = vm.run(spec.prepare, timeout=120)
        if prep.exit_status != 0:
            raise HarnessError(f"preparing workload {name} failed: {(prep.stderr or prep.stdout).strip()[-300:]}")
        extra_args = prep.stdout.split()
    file = f"{mountpoint}/pinned"
    stress = Stressors(vm, stressors, mountpoint, file)
    t0 = time.monotonic()
    start = vm.mark(f"workload {name} on {fs} with {'+'.join(stressors)}: start")
    pins_before = read_pins(vm)
    stress.setup()
    try:
        args = workload_args(spec, file, pages, stressors, extra_args, src)
        held = f"PH_WHILE_HELD={shlex.quote(stress.while_held)} " if stress.while_held else ""
        cmd = (f"echo $$ > {CGROUP}/cgroup.procs && {held}exec {GUEST_DIR}/{name} "
               + " ".join(shlex.quote(a) for a in args))
        res = vm.run(f"bash -c {shlex.quote(cmd)}", timeout=timeout)
    finally:
        stress.teardown()
    result = _parse_json_line(res.stdout, f"workload {name}")
    _raise_if_gave_up(result, f"workload {name}")  # before its pin/device steps: no outcome to classify
    if result.get("setup_errno"):  # the pin was taken but the device could not be driven: no outcome either
        raise HarnessError(f"workload {name}: setting up the device failed at {result.get('setup_stage', '?')} "
                           f"(errno {result['setup_errno']})")
    if (stress.keeps_data and not int(result.get("pin", {}).get("errno", 0) or 0)
            and not int(result.get("device_wrote_B", 0) or 0)):
        # the pin held but nothing reached the mapping: no race happened, so no outcome (never CLEAN or WARNING);
        # a stressor that punches or truncates the pinned range removes what the device wrote: not counted there
        raise HarnessError(f"workload {name}: the pin was taken but the device wrote nothing into the mapping "
                           "(device_wrote_B 0); see workload-console.log")
    stress.check_while_held(result, name)
    # Verify what reached the disk: write back, drop the whole page cache by a remount, read with O_DIRECT.
    vm.mark(f"workload {name}: verify")  # the console says which step a stop or a crash came in
    vm.run(remount_command(fs, device, mountpoint), timeout=120, check=True)
    verify = _parse_json_line(vm.run(verify_command(f"{GUEST_DIR}/{name}", file, pages), timeout=120).stdout,
                              f"verify of {name}")
    _raise_if_gave_up(verify, f"verify of {name}")  # nothing was compared: no loss to count
    pins_after = read_pins(vm, settle=SETTLE_SECONDS)
    end_mark = vm.mark(f"workload {name}: end")
    return WorkloadRun(name, fs, tuple(stressors), result, verify, vm.console_text(start)[: end_mark - start + 200],
                       stressor_notes=stress.notes, seconds=time.monotonic() - t0,
                       pins={"before": pins_before, "after": pins_after}, data_check=stress.keeps_data)
