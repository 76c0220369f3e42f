"""A booted guest runs the kernel under test with a real userspace reached over SSH."""
import re

import pytest


def test_runs_the_kernel_under_test(module_vm, kernel):
    res = module_vm.run("uname -r", timeout=30)
    assert res.exit_status == 0
    assert res.stdout.strip() == kernel.release


def test_command_status_stdout_stderr(module_vm):
    res = module_vm.run("echo out; echo err >&2; exit 7", timeout=30)
    assert (res.exit_status, res.stdout, res.stderr) == (7, "out\n", "err\n")


def test_stdin_is_passed(module_vm):
    res = module_vm.run("tr a-z A-Z", timeout=30, stdin=b"pinned pages\n")
    assert res.stdout == "PINNED PAGES\n"


def test_real_userspace_with_sshd(module_vm):
    procs = module_vm.run("ps -eo comm", timeout=30).stdout.split()
    assert "sshd" in procs
    assert module_vm.run("tr '\\0' ' ' < /proc/1/cmdline", timeout=30).stdout.split() == \
        ["/bin/busybox", "sh", "/sbin/pinharness-init"]
    for tool in ("fio", "mkfs.xfs", "e2fsck", "ibv_devices", "rdma", "ip", "modprobe"):
        assert module_vm.run(f"command -v {tool}", timeout=30).exit_status == 0, tool


def test_the_initramfs_did_the_set_up_and_pid_1_reaps_orphans(module_vm, kernel):
    """The initramfs' busybox mounted the modules disk and the API file systems, set up the network
    and the SSH key (harness/vm/initramfs_init.sh), so the rootfs init only started sshd. An orphan
    that exits is reaped by PID 1, whose shell is busybox's ash, not bash."""
    early = module_vm.run("cat /run/pinharness-early", timeout=30, check=True).stdout.split()
    modules = kernel.modules_dir is not None
    assert set(early) == {"mounts", "net", "key"} | ({"modules"} if modules else set())
    mounts = module_vm.run("findmnt -rn -o TARGET,FSTYPE", timeout=30, check=True).stdout
    wanted = [("/dev/pts", "devpts"), ("/run", "tmpfs"), ("/tmp", "tmpfs"), ("/sys", "sysfs"), ("/proc", "proc")]
    for target, fstype in wanted + ([(f"/usr/lib/modules/{kernel.release}", "ext4")] if modules else []):
        assert f"{target} {fstype}" in mounts.splitlines(), (target, mounts)
    assert module_vm.run("hostname; cat /proc/sys/kernel/sysrq", timeout=30).stdout.split() == ["pinharness", "1"]
    res = module_vm.run("(sleep 0.3 & echo $! > /tmp/orphan); sleep 2; pid=$(cat /tmp/orphan); "
                        "[ -e /proc/$pid ] && cat /proc/$pid/stat || echo gone", timeout=30, check=True)
    assert res.stdout.strip() == "gone", res.stdout


def test_modules_reach_the_guest(module_vm, kernel):
    if not kernel.has_config("XFS_FS"):
        pytest.skip("kernel has no XFS")
    module_vm.run("modprobe xfs", timeout=60, check=True)
    assert "xfs" in module_vm.run("cat /proc/filesystems", timeout=30).stdout


def test_put_and_get_files(module_vm, tmp_path):
    src = tmp_path / "blob"
    src.write_bytes(bytes(range(256)) * 4096)
    module_vm.put(src, "/tmp/blob", mode=0o600)
    assert module_vm.run("sha256sum /tmp/blob", timeout=30).stdout.split()[0] == \
        __import__("hashlib").sha256(src.read_bytes()).hexdigest()
    back = module_vm.get("/tmp/blob", tmp_path / "back")
    assert back.read_bytes() == src.read_bytes()


def test_kmsg_markers_are_on_the_console_and_in_dmesg(module_vm):
    offset = module_vm.mark("step one")
    assert "pinharness: step one" in module_vm.console_text(offset)
    assert "pinharness: step one" in module_vm.run("dmesg", timeout=30).stdout
    later = module_vm.mark("step two")
    assert later > offset


def test_each_test_starts_with_its_own_marker(module_vm, request):
    text = module_vm.console_text()
    assert re.search(r"pinharness: test start .*" + re.escape(request.node.name), text)


def test_vm_artifacts_are_written(vm, kernel):
    argv = (vm.workdir / "qemu-argv.json").read_text()
    # what -kernel got: the bzImage's uncompressed vmlinux through PVH when it has one, else the image
    from harness.vm.vm import boot_image
    booted = boot_image(kernel, vm.paths, vm.options)
    assert '"-kernel"' in argv and str(booted) in argv and booted in (kernel.image, *vm.paths.cache.glob("pvh/*.vmlinux"))
    assert (vm.workdir / "console.log").stat().st_size > 0
    console = (vm.workdir / "console.log").read_text(errors="replace")
    assert "PINHARNESS-READY" in console  # a restored guest's log starts with its snapshot's boot
    if vm.snapshot:
        assert f"restored from snapshot {vm.snapshot}" in console
