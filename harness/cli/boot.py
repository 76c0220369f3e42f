"""`python -m harness boot`: boot a kernel in a guest and run commands (or just report readiness)."""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from harness.kbuild import debian_src
from harness.vm import kernel as kernel_mod
from harness.vm.arch import ARCHES, with_arch
from harness.vm.host import Paths
from harness.cli.run import say
from harness.vm.image import MKFS, build_rootfs, make_scratch_disk
from harness.vm.vm import VM, VMOptions


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kernel", default=kernel_mod.DEFAULT_KERNELS[0], metavar="SPEC",
                   help="debian:LINE | debian:SUITE (sid, trixie...) | debian:RELEASE | debian-src:LINE | bzImage/vmlinux path | "
                        "tree:PATH (default: %(default)s)")
    p.add_argument("--arch", default=None, choices=tuple(ARCHES),
                   help="guest architecture (default: x86_64, or what --kernel names with @arm64 or its image is)")
    p.add_argument("--modules", type=Path, help="modules directory (lib/modules/<release>) for a --kernel image")
    p.add_argument("--refresh", action="store_true", help="read Debian's package indexes anew (else once a day)")
    p.add_argument("--accel", default="auto", choices=("auto", "kvm", "tcg"))
    p.add_argument("--memory", type=int, default=1024, metavar="MB")
    p.add_argument("--cpus", type=int, default=1)
    p.add_argument("--no-pvh", action="store_true",
                   help="boot the bzImage as is (default: its uncompressed vmlinux through PVH, no decompression)")
    p.add_argument("--no-snapshot", action="store_true", help="boot every guest afresh (default: restore a snapshot of a booted guest, saved on first use)")
    p.add_argument("--fs", choices=tuple(MKFS), help="attach a fresh scratch disk with this file system")
    p.add_argument("--artifacts", type=Path, help="directory for the console log etc., kept (default: a temp dir, removed unless something failed)")
    p.add_argument("--timeout", type=float, default=300, help="per-command timeout in seconds")
    p.add_argument("commands", nargs="*", help="shell commands to run in the guest, in order")


def run(args: argparse.Namespace) -> int:
    """Harness messages (progress, the KVM fallback) go to stderr: stdout is the guest's output alone."""
    paths = Paths.default()
    spec = with_arch(args.kernel, args.arch) if args.arch else args.kernel
    k = debian_src.resolve_spec(spec, paths, modules=args.modules, log=say, refresh=args.refresh)
    image = build_rootfs(paths, log=say, arch=k.arch)
    workdir = args.artifacts or Path(tempfile.mkdtemp(prefix="pinharness-boot-"))
    status = 1
    try:
        status = _boot(args, paths, k, image, workdir)
    finally:
        if args.artifacts is None and status == 0:
            shutil.rmtree(workdir, ignore_errors=True)  # kept only when asked for, or when something failed
        else:
            print(f"pinharness: console log and artifacts kept in {workdir}", file=sys.stderr)
    return status


def _boot(args: argparse.Namespace, paths: Paths, k, image, workdir: Path) -> int:
    disks = [make_scratch_disk(workdir, args.fs)] if args.fs else []
    status = 0
    with VM(k, image, paths, workdir, VMOptions(memory_mb=args.memory, cpus=args.cpus, accel=args.accel,
                                                pvh=not args.no_pvh, snapshot=not args.no_snapshot),
            disks=disks, log=say) as vm:
        print(f"pinharness: {k.name} ({k.release}) up in {vm.boot_seconds:.1f}s under {vm.accel.accel}; "
              f"ssh port {vm.machine.ssh_port}", file=sys.stderr)
        for cmd in args.commands:
            res = vm.run(cmd, timeout=args.timeout)
            sys.stdout.write(res.stdout)
            sys.stderr.write(res.stderr)
            status = res.exit_status
            if status != 0:
                break
    return status
