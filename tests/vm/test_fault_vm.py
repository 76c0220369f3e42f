"""Fault trials in real guests (issue 16): each fault is named (its error class and text), fails
within its timeout plus a margin, leaves no QEMU behind and keeps the console log; the ones that
stop the harness itself also keep the results of the cells that finished, and the next run works.

The unit tier's trials (tests/unit/*/test_fault_*.py) cover what needs no guest; the guest panic,
the real-time CPU hog and QEMU killed between commands are in tests/vm/test_failures.py."""
from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from dataclasses import asdict
from pathlib import Path

import pytest

from harness.errors import CommandKilled, GuestHang, GuestPanic, QemuDied, VMError
from harness.vm import cache
from harness.vm.host import Paths
from vm_faults import (MARGIN, OOPS_MODULES, boot_vm, close_and_check, file_text, gone, harness, module_file, oops_module,
                       qemus_on, wait_until)

pytestmark = [pytest.mark.vm, pytest.mark.fault]

RUNNING = "ph-fault-command-running"  # a kmsg line: the command under test has started
START_COMMAND = f"echo '<5>{RUNNING}' > /dev/kmsg; "


def _started(vm) -> bool:
    return RUNNING in vm.console_text()


def _in_thread(fn):
    """Run ``fn()`` in a thread; the returned dict gets its 'error' (or 'result') when it ends."""
    box: dict = {}

    def target():
        try:
            box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - the trial inspects it
            box["error"] = exc
    box["thread"] = threading.Thread(target=target, daemon=True)
    box["thread"].start()
    return box


# --------------------------------------------------------------------------- the guest kernel

def _oops_ko(kernel, tmp_path: Path) -> Path:
    """A module of ``kernel`` (one no guest loads by itself) made to oops when loaded."""
    source = module_file(kernel, OOPS_MODULES)
    if source is None:
        pytest.skip(f"{kernel.name} has none of the modules the oops trials rewrite ({', '.join(OOPS_MODULES)})")
    ko = tmp_path / "oops.ko"
    ko.write_bytes(oops_module(source))
    return ko


def test_oops_with_panic_on_oops_is_a_named_panic(ph_session, kernel, guest_image, tmp_path):
    """A module whose init jumps to address 0x10: an Oops, and with panic_on_oops the panic."""
    ko = _oops_ko(kernel, tmp_path)
    vm = boot_vm(ph_session, kernel, guest_image, tmp_path).boot()
    vm.put(ko, "/tmp/oops.ko")
    t0 = time.monotonic()
    with pytest.raises(GuestPanic, match="kernel panic: Fatal exception"):
        vm.run("echo 1 > /proc/sys/kernel/panic_on_oops; insmod /tmp/oops.ko", timeout=60)
    assert time.monotonic() - t0 < 60 + MARGIN
    close_and_check(vm)
    log = file_text(tmp_path / "vm" / "console.log")
    assert "Oops: 0010" in log and "Kernel panic - not syncing: Fatal exception" in log
    from harness.crash import console
    titles = [r.title for r in console.parse(log)]
    assert any("NULL pointer dereference" in t or "unable to handle" in t for t in titles), titles


def test_oops_without_panic_names_the_oops_in_the_killed_command(ph_session, kernel, guest_image, tmp_path):
    """Without panic_on_oops the oopsing task dies (SIGKILL): the error names the signal and the oops,
    and the guest runs the next command."""
    ko = _oops_ko(kernel, tmp_path)
    vm = boot_vm(ph_session, kernel, guest_image, tmp_path).boot()
    try:
        vm.put(ko, "/tmp/oops.ko")
        t0 = time.monotonic()
        with pytest.raises(CommandKilled, match=r"killed by SIG\w+.*(Oops|BUG: kernel NULL pointer)") as info:
            vm.run("echo 0 > /proc/sys/kernel/panic_on_oops; exec insmod /tmp/oops.ko", timeout=60)
        assert time.monotonic() - t0 < 60 + MARGIN
        assert info.value.signal in ("SIGKILL", "SIGSEGV")
        assert vm.run("echo alive", timeout=60).stdout == "alive\n"
    finally:
        close_and_check(vm)


# --------------------------------------------------------------------------- hangs

def test_qmp_stop_while_a_command_runs_is_a_named_hang(ph_session, kernel, guest_image, tmp_path):
    """QMP `stop` (from a second monitor: the harness's own is busy polling) pauses the vCPUs under a
    running command: GuestHang naming the paused run state, after the command's timeout."""
    from qemu.qmp.legacy import QEMUMonitorProtocol

    sock = tmp_path / "qmp2.sock"
    vm = boot_vm(ph_session, kernel, guest_image, tmp_path, snapshot=False,  # a socket of its own: no snapshot key
                 extra_qemu_args=("-qmp", f"unix:{sock},server=on,wait=off")).boot()
    timeout = 20
    box = _in_thread(lambda: vm.run(START_COMMAND + "sleep 600", timeout=timeout))
    wait_until(lambda: _started(vm), 60, "the command to start")
    monitor = QEMUMonitorProtocol(str(sock))
    monitor.connect()
    t0 = time.monotonic()
    try:
        monitor.cmd("stop")
        box["thread"].join(timeout + MARGIN + 30)
    finally:
        monitor.close()
    err = box.get("error")
    assert isinstance(err, GuestHang), repr(err)
    assert "QMP run state paused" in str(err) and "did not finish in 20s" in str(err)
    assert time.monotonic() - t0 < timeout + MARGIN
    close_and_check(vm)


def test_every_guest_process_stopped_is_a_named_hang(ph_session, kernel, guest_image, tmp_path):
    """SIGSTOP to every process but init (sshd included): the command cannot report back, and a fresh
    SSH session opens no channel: GuestHang."""
    vm = boot_vm(ph_session, kernel, guest_image, tmp_path).boot()
    t0 = time.monotonic()
    timeout = 20
    with pytest.raises(GuestHang, match="guest stopped answering.*QMP run state running"):
        vm.run("kill -STOP -1; sleep 600", timeout=timeout)
    assert time.monotonic() - t0 < timeout + 10 + MARGIN  # + the 10 s probe of a fresh session
    close_and_check(vm)


# --------------------------------------------------------------------------- memory, sshd, network, QEMU

def test_oom_kill_is_named_and_the_guest_runs_on(ph_session, kernel, guest_image, tmp_path):
    """`tail /dev/zero` buffers one endless line until the OOM killer takes it: CommandKilled naming
    SIGKILL and the console's 'Out of memory: Killed process', then the next command runs."""
    with boot_vm(ph_session, kernel, guest_image, tmp_path) as vm:
        t0 = time.monotonic()
        with pytest.raises(CommandKilled, match=r"killed by SIGKILL: Out of memory: Killed process \d+ \(tail\)") \
                as info:
            vm.run("exec tail /dev/zero", timeout=240)
        assert info.value.signal == "SIGKILL"
        assert time.monotonic() - t0 < 240 + MARGIN
        assert vm.run("echo alive", timeout=60).stdout == "alive\n"
        pid = vm.machine.child.pid
    assert gone(pid)
    assert "Out of memory: Killed process" in file_text(tmp_path / "vm" / "console.log")


def test_sshd_killed_in_the_guest_is_named(ph_session, kernel, guest_image, tmp_path, capfd):
    """Every sshd killed, ours included: the connection is lost, said in one line, no traceback."""
    vm = boot_vm(ph_session, kernel, guest_image, tmp_path).boot()
    t0 = time.monotonic()
    with pytest.raises(VMError, match="SSH connection lost|SSH channel closed|SSH failed running") as info:
        vm.run("pkill -KILL -x sshd; sleep 30", timeout=60)
    assert type(info.value) is VMError or isinstance(info.value, GuestHang)
    assert "\n" not in str(info.value)
    assert time.monotonic() - t0 < 30 + MARGIN
    close_and_check(vm)
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err


def test_network_device_unbound_is_named(ph_session, kernel, guest_image, tmp_path, capfd):
    """The virtio-net PCI device unbound from its driver under our SSH session: the guest stops
    answering over the network: GuestHang, one line, no traceback."""
    vm = boot_vm(ph_session, kernel, guest_image, tmp_path).boot()
    dev = vm.run("basename $(readlink -f /sys/class/net/eth0/device/..)", timeout=30, check=True).stdout.strip()
    assert dev.startswith("0000:"), dev
    t0 = time.monotonic()
    timeout = 20
    with pytest.raises(GuestHang, match="guest stopped answering"):
        vm.run(f"echo {dev} > /sys/bus/pci/drivers/virtio-pci/unbind; sleep 1; echo done", timeout=timeout)
    assert time.monotonic() - t0 < timeout + 10 + MARGIN
    close_and_check(vm)
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err


def test_qemu_killed_mid_command_is_named(ph_session, kernel, guest_image, tmp_path):
    vm = boot_vm(ph_session, kernel, guest_image, tmp_path).boot()
    pid = vm.machine.child.pid

    def kill_when_started():
        wait_until(lambda: _started(vm), 60, "the command to start")
        os.kill(pid, signal.SIGKILL)
        return time.monotonic()
    killer = _in_thread(kill_when_started)
    with pytest.raises(QemuDied, match=r"QEMU exited \(status 9\)"):
        vm.run(START_COMMAND + "sleep 600", timeout=120)
    killer["thread"].join(5)
    assert time.monotonic() - killer["result"] < 15  # named within seconds of the kill, not at the timeout
    close_and_check(vm)
    assert gone(pid)
    assert RUNNING in file_text(tmp_path / "vm" / "console.log")


# --------------------------------------------------------------------------- the harness process stopped

KERNEL = "debian:6.1"  # one kernel for the harness-level trials (the cells' run time is theirs)
FIRST, SECOND = "debian-6.1-odirect-ext4-reclaim", "debian-6.1-odirect-xfs-reclaim"
RUN = ["run", "--kernel", KERNEL, "--workload", "odirect", "--fs", "ext4,xfs", "--confirm", "0",
       "--confirm-known", "0", "--jobs", "1"]  # one cell after the other: the signal lands in the second one
CELL_TIMEOUT = 600  # one cell under TCG on a loaded machine, with room


def _stage_reached(out: Path, stage: str) -> bool:
    vm = out / SECOND / "vm"
    console = file_text(vm / "console.log")
    return {"boot": (vm / "qemu-argv.json").exists() and not (vm / "vm.json").exists(),
            "workload": "pinharness: workload odirect on xfs" in console and "workload odirect: verify" not in console,
            "verify": "pinharness: workload odirect: verify" in console}[stage]


@pytest.fixture
def accel(ph_session) -> list[str]:
    """The session's --accel for the harness processes the trials start."""
    return ["--accel", ph_session.config.getoption("--accel")]


SIGNALS = {"SIGINT": (signal.SIGINT, 130, "pinharness: interrupted"),
           "SIGTERM": (signal.SIGTERM, 143, "pinharness: terminated (SIGTERM)"),
           "SIGKILL": (signal.SIGKILL, -9, None)}


@pytest.mark.parametrize("stage", ["boot", "workload", "verify"])
@pytest.mark.parametrize("sig", list(SIGNALS))
def test_harness_stopped_by_a_signal(tmp_path, accel, sig, stage):
    """`run` of two cells, stopped by ``sig`` while the second is at ``stage``: the exit status and
    message, no QEMU left on the run's directory, the first cell's results kept (results.json too,
    unless SIGKILL), the second's scratch images gone; the first cell itself shows that the run after
    the previous trial works."""
    signum, status, message = SIGNALS[sig]
    out = tmp_path / "out"
    stderr = tmp_path / "stderr.txt"
    proc = harness([*RUN, *accel, "--out", str(out)], stderr)
    try:
        wait_until(lambda: (out / FIRST / "cell.json").exists() or proc.poll() is not None, 2 * CELL_TIMEOUT,
                   "the first cell")
        wait_until(lambda: _stage_reached(out, stage) or proc.poll() is not None, CELL_TIMEOUT,
                   f"the second cell's {stage}", poll=0.05)
        assert proc.poll() is None, f"the run ended before the {stage}: {file_text(stderr)[-2000:]}"
        t0 = time.monotonic()
        proc.send_signal(signum)
        code = proc.wait(timeout=60)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    text = file_text(stderr)
    assert code == status, text[-2000:]
    assert took < 15, f"the harness took {took:.1f}s to stop"
    if message:
        assert message in text, text[-2000:]
        assert "Traceback" not in text, text[-3000:]
    wait_until(lambda: not qemus_on(out), 10, "the run's QEMU to go")
    first = json.loads((out / FIRST / "cell.json").read_text())
    assert first["status"] not in ("ERROR", "SKIP"), first
    assert (out / FIRST / "vm" / "console.log").exists() and (out / SECOND / "vm" / "console.log").exists()
    if signum != signal.SIGKILL:
        results = json.loads((out / "results.json").read_text())
        assert [c["cell"]["fs"] for c in results["cells"]] == ["ext4"], results["cells"]
        assert results["interrupted"].startswith(("KeyboardInterrupt", "Terminated")), results["interrupted"]
        assert not list((out / SECOND).glob("*.img")), "the stopped cell's scratch images are left"
        assert (out / "junit.xml").exists()


def test_a_normal_run_after_the_stopped_ones(tmp_path, accel):
    out = tmp_path / "out"
    stderr = tmp_path / "stderr.txt"
    proc = harness(["run", "--kernel", KERNEL, "--workload", "odirect", "--fs", "xfs", "--confirm", "0", *accel,
                    "--out", str(out)], stderr)
    code = proc.wait(timeout=CELL_TIMEOUT)
    assert code == 0, file_text(stderr)[-2000:]
    cell = json.loads((out / SECOND / "cell.json").read_text())
    assert cell["status"] == "EXPECTED" and cell["ok"], cell
    assert not qemus_on(out)


# --------------------------------------------------------------------------- two harnesses, one fresh cache

def _seed_cache(fresh: Path, kernel_release: str) -> None:
    """A fresh cache holding only what no trial should rebuild: Debian's indexes, the kernel's .deb
    and the guest rootfs (copied, restamped). The kernel unpack, PVH image, initramfs, modules disk and
    snapshot are built by the two processes at once."""
    home = Paths.default().cache
    shutil.copytree(home / "debian-index", fresh / "debian-index")
    (fresh / "debian").mkdir()
    for spec in (home / "debian").glob("spec-*.json"):
        shutil.copy2(spec, fresh / "debian" / spec.name)
    (fresh / "debs").mkdir()
    for deb in (home / "debs").glob(f"*{kernel_release}*.deb"):
        shutil.copy2(deb, fresh / "debs" / deb.name)
    for image in (home / "images").iterdir():
        rootfs = image / "rootfs.ext4"
        if not cache.stamp_path(rootfs).exists() or cache.problem(rootfs) is not None:
            continue
        dest = fresh / "images" / image.name
        dest.mkdir(parents=True)
        for f in image.iterdir():
            if not f.name.endswith(".lock"):
                shutil.copy2(f, dest / f.name)  # sparse files stay sparse enough: copyfile uses sendfile
        stamp = json.loads(cache.stamp_path(rootfs).read_text())
        stamp["fingerprint"] = cache.fingerprint(dest / "rootfs.ext4")
        cache.stamp_path(dest / "rootfs.ext4").write_text(json.dumps(stamp))


def test_two_harnesses_share_one_fresh_cache(tmp_path, ph_session, accel):
    kernel = ph_session.kernel(KERNEL)
    fresh = tmp_path / "cache"
    _seed_cache(fresh, kernel.release)
    env = {"PINHARNESS_CACHE": str(fresh)}
    t0 = time.monotonic()
    procs = [harness(["boot", "--kernel", KERNEL, *accel, "--artifacts", str(tmp_path / f"boot{i}"), "uname -r"],
                     tmp_path / f"stderr{i}.txt", env=env) for i in (1, 2)]
    try:
        outs = [p.communicate(timeout=900)[0].decode() for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(30)
    errs = [file_text(tmp_path / f"stderr{i}.txt") for i in (1, 2)]
    assert [p.returncode for p in procs] == [0, 0], errs
    assert outs == [f"{kernel.release}\n"] * 2, (outs, errs)
    assert not any("Traceback" in e or "unusable" in e for e in errs), errs
    assert not qemus_on(fresh)
    assert not list(fresh.rglob("*.tmp-*")) and not list(fresh.rglob("*.tmp")), "a temporary artifact was left"
    # each artifact was built once, by one of the two, and the other used it: one kernel unpack, one
    # PVH vmlinux, one snapshot (a second would mean the two saw different files under one name)
    assert sum("unpacking" in e for e in errs) == 1, errs
    assert len([d for d in (fresh / "snapshots").iterdir() if d.is_dir()]) == 1
    for built in (*fresh.glob("pvh/*.vmlinux"), *fresh.glob("initramfs/*.cpio.gz"), *fresh.glob("modules-disks/*.ext4")):
        assert cache.problem(built) is None, built
    # the next normal boot uses what the two built, and builds nothing again
    third = harness(["boot", "--kernel", KERNEL, *accel, "--artifacts", str(tmp_path / "boot3"), "uname -r"],
                    tmp_path / "stderr3.txt", env=env)
    assert third.communicate(timeout=600)[0].decode() == f"{kernel.release}\n", file_text(tmp_path / "stderr3.txt")
    assert third.returncode == 0
    assert "rebuilding" not in file_text(tmp_path / "stderr3.txt")
    assert time.monotonic() - t0 < 1500
    assert not qemus_on(fresh)


# --------------------------------------------------------------------------- more guests than cores

def test_jobs_4_on_a_small_machine_ends_normally(tmp_path, accel):
    out = tmp_path / "out"
    stderr = tmp_path / "stderr.txt"
    proc = harness(["run", "--kernel", KERNEL, "--workload", "odirect", "--fs", "ext4,xfs", "--stressor", "reclaim",
                    "--stressor", "drop-caches", "--jobs", "4", "--confirm", "0", "--confirm-known", "0", *accel,
                    "--out", str(out)], stderr)
    try:
        code = proc.wait(timeout=4 * CELL_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    text = file_text(stderr)
    assert code in (0, 1), text[-2000:]
    assert "Traceback" not in text
    results = json.loads((out / "results.json").read_text())
    assert len(results["cells"]) == 4
    statuses = [c.get("status") for c in results["cells"]]
    assert "ERROR" not in statuses and "SKIP" not in statuses, statuses
    assert not qemus_on(out)
    assert not list(out.glob("*/*.img")), "scratch images left"
