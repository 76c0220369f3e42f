"""Reproducers (harness/pins/repro): every workload exports from a synthetic cell into a C file that
compiles, scripts that parse (and pass shellcheck), and a REPORT.md with the fields a mail needs."""
import json
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from harness.crash import console
from harness.errors import HarnessError
from harness.pins import repro
from harness.pins.repro import csource, scripts
from harness.pins.stressors import DISK_DEV, STRESSORS
from harness.pins.workloads import WORKLOADS, make_source_disk, workload_vm_options
from repro_cells import GOLDEN, RELEASE, WARNING_LOG, make_cell

SHELLCHECK = shutil.which("shellcheck")
VERBS = Path("/usr/include/infiniband/verbs.h").exists()


def _export(tmp_path, workload, **kw):
    cell = make_cell(tmp_path, workload, **kw)
    return repro.export(repro.load(cell), tmp_path / "out"), cell


def _sh_check(path: Path, *shell: str) -> None:
    proc = subprocess.run([*shell, "-n", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"{path.name}: {proc.stderr}"
    if SHELLCHECK:
        dialect = "sh" if "busybox" in shell else "bash"
        proc = subprocess.run([SHELLCHECK, "-S", "warning", "-s", dialect, str(path)], capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout


@pytest.mark.parametrize("workload", list(WORKLOADS))
def test_every_workload_exports_a_build_and_scripts(tmp_path, workload):
    out, cell = _export(tmp_path, workload)
    d = out.directory
    assert {"repro.c", "repro.sh", "init.sh", "qemu.sh", "REPORT.md", "kernel.config"} == set(out.sizes)
    src = (d / "repro.c").read_text()
    assert '#include "' not in src, "a project header was left as an include"
    spec = WORKLOADS[workload]
    build = " ".join(csource.build_line(spec))
    assert f"build: {build}" in src.split("*/", 1)[0]
    if spec.libs and not VERBS:
        pytest.skip("libibverbs-dev is not installed: repro.c of rdma not compiled")
    proc = subprocess.run(["gcc", "-O2", "-Wall", "-pthread", "-fsyntax-only", str(d / "repro.c")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    _sh_check(d / "repro.sh", "bash")
    _sh_check(d / "qemu.sh", "bash")
    if shutil.which("busybox"):
        _sh_check(d / "init.sh", "busybox", "sh")
    # the tarball holds the same files under one top directory
    with tarfile.open(out.tarball) as tar:
        assert sorted(tar.getnames()) == sorted(f"{d.name}/{n}" for n in out.sizes)
    assert (d / "qemu.sh").stat().st_mode & 0o111 and (d / "repro.sh").stat().st_mode & 0o111


@pytest.mark.parametrize("workload", list(WORKLOADS))
def test_qemu_sh_attaches_what_the_harness_attached(tmp_path, workload):
    out, cell = _export(tmp_path, workload)
    f = repro.load(cell)
    text = (out.directory / "qemu.sh").read_text()
    opts = workload_vm_options(WORKLOADS[workload], f.stressors)
    assert f"-m {opts.get('memory_mb', 1024)}M" in text
    for dev in opts.get("devices", ()):
        assert f"-device {dev}" in text
    assert ("-device intel-iommu" in text) is bool(opts.get("iommu"))
    assert ("intel_iommu=on" in text) is bool(opts.get("iommu"))
    for word in opts.get("cmdline", ()):
        assert word in text
    assert ("serial=ph-source" in text) is WORKLOADS[workload].source_disk
    if WORKLOADS[workload].source_disk and WORKLOADS[workload].source_iops:
        assert f"throttling.iops-read={WORKLOADS[workload].source_iops}" in text
    fill = any(STRESSORS[n].disk_mb for n in f.stressors)
    assert ("serial=ph-bhfill" in text) is fill
    for tool in WORKLOADS[workload].tools:
        assert tool in text.split("TOOLS=(", 1)[1].split(")", 1)[0]
    assert "DEBS=('https://deb.debian.org/" in text


def test_report_reads_like_a_mail(tmp_path):
    out, cell = _export(tmp_path, "odirect", stressors=("reclaim",), runs=3)
    text = (out.directory / "REPORT.md").read_text()
    first = text.splitlines()[0]
    assert first == "Subject: [BUG] [ext4?] WARNING in ext4_dirty_folio (16/16 pages lost)"
    assert RELEASE in text and "linux-image-6.1.0-57-amd64-unsigned 6.1.192-3" in text
    assert "CONFIG_LRU_GEN=y" in text and "# CONFIG_LRU_GEN_ENABLED is not set" in text
    assert "CONFIG_TRANSPARENT_HUGEPAGE=y" in text
    assert "Reproduction rate: 2/3 runs" in text
    assert "16 of 16 pages the device wrote are not on disk" in text
    assert "the ext4 check of the disk afterwards is clean" in text
    assert "ext4_dirty_folio+0x28/0x30" in text  # the trace from reports.txt
    assert f"tar xzf {out.directory.name}.tar.gz && cd {out.directory.name} && ./qemu.sh" in text
    assert "REPRODUCED: WARNING in ext4_dirty_folio, 16/16 pages lost" in text
    assert "DIO holds page references" in text  # the oracle's why for this kernel
    assert "--src /dev/SLOW" in text and "--fill" not in text


def test_a_clean_cell_exports_a_clean_expectation(tmp_path):
    out, _ = _export(tmp_path, "odirect", stressors=("reclaim",), bug=False)
    text = (out.directory / "REPORT.md").read_text()
    assert "(the kernel logged no report)" in text
    assert "all 16 pages the device wrote are on disk" in text


def test_repro_sh_runs_the_tables_steps_in_order(tmp_path):
    out, _ = _export(tmp_path, "odirect", stressors=("mglru-off", "bh-fill", "reclaim"))
    text = (out.directory / "repro.sh").read_text()
    setup = text.split("stressor_setup() {", 1)[1].split("\n}", 1)[0]
    assert setup.index("# mglru-off") < setup.index("# bh-fill")
    assert "if [ -e /sys/kernel/mm/lru_gen/enabled ]; then" in setup
    assert "echo n > /sys/kernel/mm/lru_gen/enabled" in text
    assert DISK_DEV not in text and 'dev="$FILL"; blockdev --setbsz 512 $dev' in text
    assert "echo y > /sys/kernel/mm/lru_gen/enabled 2>/dev/null; true" in text  # teardown
    assert 'ARGS=(file="$FILE" pages=16 cgroup=/sys/fs/cgroup/pinharness reclaim=1 src="$SRC")' in text
    assert "NEEDS_FILL=1" in text and "NEEDS_SRC=1" in text


def test_while_held_steps_reach_the_program_with_the_run_time_paths(tmp_path):
    out, _ = _export(tmp_path, "vfio", stressors=("fsfreeze",))
    text = (out.directory / "repro.sh").read_text()
    line = next(ln for ln in text.splitlines() if ln.startswith("WHILE_HELD="))
    assert 'fsfreeze -f "$MNT"' in line and line.startswith("WHILE_HELD='")
    assert "DATA_CHECK=1" in text
    out, _ = _export(tmp_path / "p", "vfio", stressors=("punch-hole",))
    assert "DATA_CHECK=0" in (out.directory / "repro.sh").read_text()


def test_make_source_writes_the_harness_pattern(tmp_path):
    out, _ = _export(tmp_path, "odirect", stressors=("reclaim",))
    dest = tmp_path / "src.img"
    subprocess.run(["bash", str(out.directory / "repro.sh"), "--make-source", str(dest), "80"], check=True,
                   timeout=120)
    assert dest.read_bytes() == make_source_disk(tmp_path, 16).read_bytes()


# The consoles a pin reproducer meets: our guests', the pin bugs' public reports (bugzilla, syzbot).
# repro.sh titles these in a few lines of shell; the parser's corpus of other architectures and
# syzkaller's exotic kinds (arm32 traps, Rust panics, old KASAN...) is the crash parser's alone.
GUEST_LOGS = sorted(p for p in GOLDEN.glob("*.log") if p.name.startswith(("guest-", "bugzilla-", "syzbot-")))


@pytest.mark.parametrize("log", GUEST_LOGS, ids=[p.stem for p in GUEST_LOGS])
def test_repro_sh_titles_agree_with_the_crash_parser(tmp_path, log):
    out, _ = _export(tmp_path, "odirect", stressors=("reclaim",))
    proc = subprocess.run(["bash", str(out.directory / "repro.sh"), "--titles-from", str(log)], capture_output=True,
                          text=True, timeout=60)
    mine = proc.stdout.splitlines()
    parsed = [r.title for r in console.parse(log.read_text(errors="replace"))]
    if log.name.startswith("guest-"):  # our own guests' consoles: always named
        assert mine, f"no title from {log.name}; the parser says {parsed}"
    if mine:
        assert parsed and parsed[0].startswith(mine[0]), (mine, parsed)


ONE_LINE_WARNINGS = [  # Linux 6.19+ prints the WARNING on one line (7.2's odirect finding; the same without a function)
    ("WARNING: fs/ext4/inode.c:3954 at ext4_dirty_folio+0x30/0x40 [ext4], CPU#0: odirect/213\n"
     "RIP: 0010:ext4_dirty_folio+0x30/0x40 [ext4]\n", "WARNING in ext4_dirty_folio"),
    ("WARNING: mm/gup.c:12 at 0x0, CPU#1: kworker/1:0/33\nRIP: 0010:unpin_user_pages_dirty_lock.part.0+0x5/0x9\n",
     "WARNING in unpin_user_pages_dirty_lock"),
]


@pytest.mark.parametrize("text,title", ONE_LINE_WARNINGS)
def test_repro_sh_titles_the_one_line_warning_format(tmp_path, text, title):
    out, _ = _export(tmp_path, "odirect", stressors=("reclaim",))
    log = tmp_path / "console.log"
    log.write_text("[   40.1] " + text.replace("\n", "\n[   40.2] ", 1))
    proc = subprocess.run(["bash", str(out.directory / "repro.sh"), "--titles-from", str(log)], capture_output=True,
                          text=True, timeout=60)
    assert proc.stdout.splitlines()[:1] == [title]
    assert [r.title for r in console.parse(log.read_text())][:1] == [title]  # the crash parser agrees


JUDGE = [  # (result, verify, log, exit, line)
    ('{"device_wrote_B": 16, "pin": {"errno": 0, "ret": 65536}}', '{"verify": true, "A": 16, "B": 0}',
     GOLDEN / "guest-debian61-odirect-ext4-warning.log", 1, "REPRODUCED: WARNING in ext4_dirty_folio, 16/16 pages lost"),
    ('{"device_wrote_B": 16, "pin": {"errno": 0}, "reclaim_errno": 0}', '{"verify": true, "A": 0, "B": 16}',
     None, 0, "CLEAN: 16/16 pages the device wrote are on disk, no kernel report"),
    ('{"device_wrote_B": 16, "pin": {"errno": 0}}', '{"verify": true, "A": 3, "B": 13}', None, 1,
     "REPRODUCED: data loss, 3/16 pages lost"),
    ('{"reclaim_errno": 0, "device_wrote_B": 0, "pin": {"errno": 14, "strerror": "Bad address"}}',
     '{"verify": true, "A": 16, "B": 0}', None, 0, "CLEAN: the kernel refused the pin (errno 14), no kernel report"),
]


@pytest.mark.parametrize("result,verify,log,code,line", JUDGE)
def test_repro_sh_judges_like_the_oracle(tmp_path, result, verify, log, code, line):
    out, _ = _export(tmp_path, "odirect", stressors=("reclaim",))
    empty = tmp_path / "empty.log"
    empty.write_text("")
    proc = subprocess.run(["bash", str(out.directory / "repro.sh"), "--judge", result, verify, str(log or empty)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1] == line


def test_placeholders_become_variables():
    assert scripts.word("file=@FILE@") == 'file="$FILE"'
    assert scripts.word("a b") == "'a b'"
    assert scripts.code("fsfreeze -f @MNT@") == 'fsfreeze -f "$MNT"'


def test_a_directory_that_is_no_cell_is_a_one_line_error(tmp_path):
    with pytest.raises(HarnessError, match="cell.json missing"):
        repro.load(tmp_path)
    with pytest.raises(HarnessError, match="not a directory"):
        repro.load(tmp_path / "nope")
    cell = make_cell(tmp_path, "odirect")
    d = json.loads((cell / "cell.json").read_text())
    d.update(status="SKIP", run={})
    (cell / "cell.json").write_text(json.dumps(d))
    with pytest.raises(HarnessError, match="nothing to reproduce"):
        repro.load(cell)


# --------------------------------------------------------------------------- qemu.sh's host side, QEMU faked

FAKE_QEMU = r'''#!/bin/bash
# stands in for qemu-system-x86_64: records its argv, unpacks the initramfs, answers like the guest would
work=$FAKE_QEMU_OUT
printf '%s\n' "$@" > "$work/argv.$$"
while [ $# -gt 0 ]; do
    case "$1" in
        -initrd) mkdir -p "$work/root" && (cd "$work/root" && gzip -dc "$2" | cpio -idm --quiet) ;;
        -append) case " $2 " in *" ph.canary=1 "*) echo "PH-CANARY-OK"; exit 0;; esac ;;
    esac
    shift
done
if [ -n "${FAKE_GUEST_LOG:-}" ]; then cat "$FAKE_GUEST_LOG"; exit 0; fi  # a guest that died on its own
printf 'Linux version fake\r\nrepro: odirect\r\nREPRODUCED: WARNING in ext4_dirty_folio, 16/16 pages lost\r\nPH-REPRO-EXIT=1\r\n'
'''


def _cached_kernels() -> list[Path]:
    """The modules directories of the Debian kernels the harness unpacked in its cache."""
    from harness.vm.host import Paths

    return [p.parents[2] for p in sorted(Paths.default().cache.glob("debian/*/lib/modules/*/kernel/fs/ext4"))]


def _small_modules(tmp_path: Path, index: int = 0) -> Path:
    """The boot modules of a cached Debian kernel (and their dependencies) in a small depmod'ed tree."""
    found = _cached_kernels()
    if len(found) <= index or not shutil.which("depmod"):
        pytest.skip(f"no unpacked Debian kernel #{index + 1} in the cache (run the harness once) or no depmod")
    moddir = found[index]
    rel = moddir.name
    root = tmp_path / "modroot"
    dest = root / "lib" / "modules" / rel
    dest.mkdir(parents=True)
    out = "".join(subprocess.run(["modprobe", "-d", str(moddir.parents[2]), "-S", rel, "--show-depends", m],
                                 capture_output=True, text=True, timeout=60).stdout for m in scripts.INITRAMFS_MODULES)
    for line in out.splitlines():
        if line.startswith("insmod "):
            ko = Path(line.split()[1])
            target = dest / ko.relative_to(moddir)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ko, target)
    for name in ("modules.builtin", "modules.builtin.modinfo", "modules.order"):
        if (moddir / name).exists():
            shutil.copy(moddir / name, dest / name)
    subprocess.run(["depmod", "-b", str(root), rel], check=True, timeout=120)
    return dest


def _fake_qemu(tmp_path: Path) -> dict:
    """A PATH whose qemu-system-x86_64 is FAKE_QEMU (recording into tmp_path/rec), as qemu.sh's environment."""
    fake_bin, rec = tmp_path / "fakebin", tmp_path / "rec"
    fake_bin.mkdir()
    rec.mkdir()
    (fake_bin / "qemu-system-x86_64").write_text(FAKE_QEMU)
    (fake_bin / "qemu-system-x86_64").chmod(0o755)
    return {"PATH": f"{fake_bin}:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": str(tmp_path), "ACCEL": "tcg",
            "TIMEOUT": "60", "FAKE_QEMU_OUT": str(rec)}


@pytest.fixture
def fake_qemu_run(request, tmp_path):
    """Runs an odirect export's qemu.sh on this host with QEMU faked (FAKE_QEMU); (export, run(**env), record dir).
    Indirect parameter: which cached kernel's modules (default the first)."""
    for tool in ("gcc", "busybox", "cpio", "mkfs.ext4", "modprobe"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} not installed")
    modules = _small_modules(tmp_path, getattr(request, "param", 0))
    out, _ = _export(tmp_path, "odirect", stressors=("reclaim",))
    (tmp_path / "bzImage").write_bytes(b"fake")
    base = {**_fake_qemu(tmp_path), "MODULES": str(modules), "KERNEL": str(tmp_path / "bzImage")}
    rec = tmp_path / "rec"

    def run(**env):
        return subprocess.run(["bash", str(out.directory / "qemu.sh")], env={**base, **env}, capture_output=True,
                              text=True, timeout=600, cwd=tmp_path)
    return out, run, rec


@pytest.mark.parametrize("fake_qemu_run", [0, 1, 2], indirect=True, ids=["kernel1", "kernel2", "kernel3"])
def test_qemu_sh_builds_initramfs_and_disks_and_passes_the_guest_verdict(tmp_path, fake_qemu_run):
    out, run, rec = fake_qemu_run
    kernel = tmp_path / "bzImage"
    proc = run()
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert proc.stdout.splitlines()[-1] == "REPRODUCED: WARNING in ext4_dirty_folio, 16/16 pages lost"
    work = out.directory / "work"
    argv = next(rec.glob("argv.*")).read_text().splitlines()
    assert argv[argv.index("-accel") + 1] == "tcg" and argv[argv.index("-cpu") + 1] == "max"
    assert argv[argv.index("-kernel") + 1] == str(kernel)
    assert f"file={work}/source.img,if=none,id=drive2,format=raw,cache=unsafe,readonly=on,throttling.iops-read=1" in argv
    # the disks: a fresh ext4 scratch, the device's pattern, the modules
    assert (work / "source.img").read_bytes() == make_source_disk(tmp_path, 16).read_bytes()
    assert b"\x53\xef" == (work / "scratch.img").read_bytes()[0x438:0x43a]  # the ext4 superblock magic
    assert (work / "modules.img").stat().st_size > 64 << 20
    # the initramfs: busybox, bash and modprobe with their libraries, the boot modules in order, the program
    root = rec / "root"
    for p in ("init", "bin/busybox", "usr/bin/bash", "usr/bin/modprobe", "repro/repro", "repro/repro.sh"):
        assert (root / p).is_file(), p
    order = (root / "modules" / "order").read_text().split()
    names = [o.split("-", 1)[1] for o in order]  # dependencies first, each once (built-in ones absent)
    for dep, mod in (("virtio_ring.ko", "virtio_blk.ko"), ("jbd2.ko", "ext4.ko"), ("mbcache.ko", "ext4.ko")):
        if dep in names and mod in names:
            assert names.index(dep) < names.index(mod)
    assert "ext4.ko" in names and len(set(names)) == len(names)
    assert all((root / "modules" / o).read_bytes()[:4] == b"\x7fELF" for o in order)
    assert (root / "repro" / "repro").read_bytes()[:4] == b"\x7fELF"
    assert (root / "init").read_text() == (out.directory / "init.sh").read_text()
    chroot = shutil.which("chroot")
    if os.geteuid() == 0 and chroot:  # the copied tools run in the initramfs' own world
        for cmd in (["/bin/busybox", "--install", "-s", "/bin"],  # what /init does first
                    ["/usr/bin/bash", "-c", "echo ok"], ["/usr/bin/modprobe", "--version"],
                    ["/bin/busybox", "sh", "-c", "echo ok"]):
            res = subprocess.run([chroot, str(root), *cmd], capture_output=True, text=True, timeout=60)
            assert res.returncode == 0, (cmd, res.stderr)
        res = subprocess.run([chroot, str(root), "/usr/bin/bash", "/repro/repro.sh", "--help"],
                             capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
        assert "usage:" in res.stderr
        # the verdict with busybox's grep and awk, as in the guest
        result, verify, log, code, line = JUDGE[0]
        (root / "tmp").mkdir(exist_ok=True)
        shutil.copy(log, root / "tmp" / "console.log")
        res = subprocess.run([chroot, str(root), "/usr/bin/bash", "/repro/repro.sh", "--judge", result, verify,
                              "/tmp/console.log"], capture_output=True, text=True, timeout=60,
                             env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
        assert (res.returncode, res.stdout.splitlines()[-1]) == (code, line), res.stdout + res.stderr
        res = subprocess.run([chroot, str(root), "/usr/bin/bash", "/repro/repro.sh", "--make-source", "/tmp/s", "80"],
                             capture_output=True, text=True, timeout=120, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
        assert (root / "tmp" / "s").read_bytes() == (work / "source.img").read_bytes(), res.stderr


def test_qemu_sh_names_the_crash_of_a_guest_that_died(tmp_path, fake_qemu_run):
    """No PH-REPRO-EXIT (the guest panicked): qemu.sh names the console's report itself; no report is an error."""
    out, run, _ = fake_qemu_run
    proc = run(FAKE_GUEST_LOG=str(GOLDEN / "syzbot-kernel-bug-ext4_do_writepages.log"))
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert proc.stdout.splitlines()[-1].startswith("REPRODUCED: kernel BUG in ext4_do_writepages (the guest died")
    empty = tmp_path / "empty.log"
    empty.write_text("Linux version fake\n")
    proc = run(FAKE_GUEST_LOG=str(empty))
    assert proc.returncode == 2 and "the guest did not finish" in proc.stderr


STUB = '#!/bin/busybox sh\necho "$(basename "$0") $*" >> /stub.log\n'


@pytest.fixture
def initramfs_root(fake_qemu_run):
    """(chroot, root): the initramfs qemu.sh packed, unpacked, with busybox's applets installed as /init would."""
    chroot = shutil.which("chroot")
    if os.geteuid() != 0 or not chroot:
        pytest.skip("chroot needs root")
    out, run, rec = fake_qemu_run
    assert run().returncode == 1
    root = rec / "root"
    subprocess.run([chroot, str(root), "/bin/busybox", "--install", "-s", "/bin"], check=True, timeout=60)
    return chroot, root


def test_init_finds_the_disks_by_serial_and_passes_repro_sh_their_devices(initramfs_root):
    """/init of the initramfs qemu.sh packed, run by busybox in a chroot of it: mount, modprobe and poweroff
    are stubs, no module to insmod, /sys/block and /proc/cmdline plain files, repro.sh a stub that exits 1."""
    chroot, root = initramfs_root
    # busybox sh runs some applets (insmod, sync) whatever PATH says: load no module into this host's kernel
    (root / "modules" / "order").write_text("")
    for tool in ("usr/sbin/mount", "usr/sbin/umount", "usr/bin/modprobe"):
        (root / tool).unlink(missing_ok=True)
        (root / tool).write_text(STUB)
        (root / tool).chmod(0o755)
    (root / "usr" / "sbin" / "poweroff").write_text(STUB + 'echo "powered off"\nkill -9 $PPID\n')
    (root / "usr" / "sbin" / "poweroff").chmod(0o755)
    (root / "repro" / "repro.sh").write_text('echo "repro.sh $*" >> /stub.log\necho "REPRODUCED: stub"\nexit 1\n')
    for dev, serial in (("vda", "scratch0"), ("vdb", "ph-modules"), ("vdc", "ph-source")):
        (root / "sys" / "block" / dev).mkdir(parents=True)
        (root / "sys" / "block" / dev / "serial").write_text(serial + "\n")
    (root / "proc" / "cmdline").write_text("console=ttyS0,115200 panic=-1\n")
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    proc = subprocess.run([chroot, str(root), "/init"], capture_output=True, text=True, timeout=60, env=env)
    assert "REPRODUCED: stub" in proc.stdout and "PH-REPRO-EXIT=1" in proc.stdout, proc.stdout + proc.stderr
    log = (root / "stub.log").read_text().splitlines()
    assert "modprobe ext4" in log  # kmod's, by path
    assert any(ln.startswith("mount -t ext4 -o ro /dev/vdb /lib/modules/") for ln in log), log
    assert "mount -t ext4 /dev/vda /mnt/scratch" in log
    assert "repro.sh --mnt /mnt/scratch --bin /repro/repro --src /dev/vdc" in log
    assert log.index("mount -t ext4 /dev/vda /mnt/scratch") < log.index(
        "repro.sh --mnt /mnt/scratch --bin /repro/repro --src /dev/vdc") < log.index("poweroff -f")
    # the canary: the same init answers and powers off before touching a disk
    (root / "stub.log").unlink()
    (root / "proc" / "cmdline").write_text("console=ttyS0,115200 ph.canary=1\n")
    proc = subprocess.run([chroot, str(root), "/init"], capture_output=True, text=True, timeout=60, env=env)
    assert "PH-CANARY-OK" in proc.stdout and "PH-REPRO-EXIT" not in proc.stdout
    assert not any(ln.startswith("repro.sh") for ln in (root / "stub.log").read_text().splitlines())
    # a missing disk is an exit status, not a hang
    (root / "proc" / "cmdline").write_text("console=ttyS0,115200\n")
    shutil.rmtree(root / "sys" / "block" / "vdc")
    proc = subprocess.run([chroot, str(root), "/init"], capture_output=True, text=True, timeout=60, env=env)
    assert "PH-REPRO-EXIT=2" in proc.stdout and "no disk with serial ph-source" in proc.stderr + proc.stdout



def test_qemu_sh_fetches_checks_and_unpacks_the_debian_package(tmp_path):
    """Without KERNEL=: the package named in DEBS is downloaded (a file:// URL here), its SHA256 checked,
    unpacked and depmod'ed, and its vmlinuz booted; a wrong SHA256 stops before anything boots."""
    import hashlib

    for tool in ("gcc", "busybox", "cpio", "mkfs.ext4", "modprobe", "dpkg-deb", "curl"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} not installed")
    modules = _small_modules(tmp_path)
    rel = modules.name
    pkg = tmp_path / "pkg"
    shutil.copytree(modules, pkg / "lib" / "modules" / rel, ignore=shutil.ignore_patterns("modules.*"))
    (pkg / "boot").mkdir()
    (pkg / "boot" / f"vmlinuz-{rel}").write_bytes(b"fake kernel")
    (pkg / "DEBIAN").mkdir()
    (pkg / "DEBIAN" / "control").write_text(f"Package: linux-image-{rel}-unsigned\nVersion: 1\nArchitecture: amd64\n"
                                            "Maintainer: nobody <nobody@example.org>\nDescription: a test kernel\n")
    deb = tmp_path / f"linux-image-{rel}-unsigned_1_amd64.deb"
    subprocess.run(["dpkg-deb", "--build", "-Zgzip", str(pkg), str(deb)], check=True, capture_output=True, timeout=120)
    sha = hashlib.sha256(deb.read_bytes()).hexdigest()

    def export_with(sha256):
        from repro_cells import fake_kernel

        k = fake_kernel(tmp_path / f"k-{sha256[:4]}")
        k.extra["debs"] = [{"package": deb.name, "version": "1", "url": deb.as_uri(), "sha256": sha256, "size": 1}]
        cell = make_cell(tmp_path / sha256[:4], "odirect", stressors=("reclaim",), kernel=k)
        for name, key in (("cell.json", "release"), ("kernel.json", "release")):
            d = json.loads((cell / name).read_text())
            d[key] = rel
            (cell / name).write_text(json.dumps(d))
        return repro.export(repro.load(cell), tmp_path / sha256[:4] / "out")

    env, rec = _fake_qemu(tmp_path), tmp_path / "rec"
    out = export_with(sha)
    proc = subprocess.run(["bash", str(out.directory / "qemu.sh")], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 1, proc.stderr[-3000:]
    work = out.directory / "work"
    argv = next(rec.glob("argv.*")).read_text().splitlines()
    assert argv[argv.index("-kernel") + 1] == str(work / "kernel" / "boot" / f"vmlinuz-{rel}")
    assert (work / "kernel" / "lib" / "modules" / rel / "modules.dep").is_file()  # depmod ran
    bad = export_with("0" * 64)
    proc = subprocess.run(["bash", str(bad.directory / "qemu.sh")], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 2 and "SHA256 mismatch" in proc.stderr, proc.stderr[-2000:]


def test_qemu_sh_boots_the_recorded_kernel_when_there_is_no_package(tmp_path):
    from repro_cells import fake_kernel

    for tool in ("gcc", "busybox", "cpio", "mkfs.ext4", "modprobe"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} not installed")
    modules = _small_modules(tmp_path)
    k = fake_kernel(tmp_path / "built", modules=modules)
    k.extra.clear()  # a tree or image kernel: no Debian package
    out = repro.export(repro.load(make_cell(tmp_path, "odirect", stressors=("reclaim",), kernel=k)), tmp_path / "o")
    env, rec = _fake_qemu(tmp_path), tmp_path / "rec"
    proc = subprocess.run(["bash", str(out.directory / "qemu.sh")], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 1, proc.stderr[-2000:]
    argv = next(rec.glob("argv.*")).read_text().splitlines()
    assert argv[argv.index("-kernel") + 1] == str(k.image)
    (tmp_path / "built" / "vmlinuz").unlink()  # elsewhere: KERNEL= is asked for in one line
    proc = subprocess.run(["bash", str(out.directory / "qemu.sh")], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 2 and "set KERNEL=/path/to/bzImage MODULES=" in proc.stderr.strip().splitlines()[-1]


def test_repro_sh_runs_the_cell_in_a_chroot_of_the_initramfs(initramfs_root):
    """repro.sh's whole flow with the initramfs' bash, busybox and static program, in a chroot: /proc,
    /sys and /dev/kmsg are plain files (nothing reaches this host's kernel but O_DIRECT reads of a
    file), mount is a stub, dmesg prints the kmsg file. The DIO writes pattern B: CLEAN; with a
    WARNING in the kernel log after the marker: REPRODUCED with its title."""
    chroot, root = initramfs_root
    for tool, body in (("usr/sbin/mount", STUB), ("usr/sbin/umount", STUB),
                       ("usr/bin/dmesg", "#!/bin/busybox sh\ncat /dev/kmsg\n[ -e /inject ] && cat /inject\ntrue\n")):
        (root / tool).unlink(missing_ok=True)
        (root / tool).write_text(body)
        (root / tool).chmod(0o755)
    for d in ("mnt/scratch", "run", "sys/fs/cgroup/pinharness", "proc/sys/vm"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "sys" / "fs" / "cgroup" / "pinharness" / "memory.reclaim").write_text("")
    (root / "proc" / "mounts").write_text("/dev/vda /mnt/scratch ext4 rw,relatime 0 0\n")
    (root / "sys" / "fs" / "cgroup" / "cgroup.subtree_control").write_text("memory\n")
    (root / "dev" / "kmsg").write_text("")
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    subprocess.run([chroot, str(root), "/usr/bin/bash", "/repro/repro.sh", "--make-source", "/srcimg", "80"],
                   check=True, timeout=120, env=env)
    argv = [chroot, str(root), "/usr/bin/bash", "/repro/repro.sh", "--mnt", "/mnt/scratch", "--bin", "/repro/repro",
            "--src", "/srcimg"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1] == "CLEAN: 16/16 pages the device wrote are on disk, no kernel report"
    assert "repro: running: /repro/repro file=/mnt/scratch/pinned pages=16 cgroup=/sys/fs/cgroup/pinharness " \
           "reclaim=1 src=/srcimg" in proc.stdout
    assert (root / "sys" / "fs" / "cgroup" / "pinharness" / "memory.reclaim").read_text() == "1G"
    assert "mount -t ext4 /dev/vda /mnt/scratch" in (root / "stub.log").read_text()  # the remount
    assert "pinharness-repro: start" in (root / "dev" / "kmsg").read_text()
    shutil.copy(WARNING_LOG, root / "inject")
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1] == "REPRODUCED: WARNING in ext4_dirty_folio, 0/16 pages lost"


def test_the_rate_of_a_confirmed_cell_comes_from_the_runs_results_json(tmp_path):
    """cell.json is one run's record; `run --confirm` writes the cell's rate into results.json."""
    from harness.pins.repro import finding
    from repro_cells import make_cell

    cell_dir = make_cell(tmp_path, "odirect")
    assert (finding.load(cell_dir).runs, finding.load(cell_dir).reproduced) == (1, 1)
    cell_id = json.loads((cell_dir / "cell.json").read_text())["cell"]["id"]
    (cell_dir.parent / "results.json").write_text(json.dumps(
        {"pinharness": 1, "cells": [{"cell": {"id": cell_id}, "runs": 3, "reproduced": 3}]}))
    got = finding.load(cell_dir)
    assert (got.runs, got.reproduced) == (3, 3)
