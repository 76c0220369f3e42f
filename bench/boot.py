#!/usr/bin/env python3
"""Boot latency, in one interleaved run per kernel: a guest restored from its snapshot and a
cold-booted one (launch -> first command output), bare QEMU + a busybox initramfs (bzImage and
PVH vmlinux), the whole `harness boot` command with and without snapshots, and virtme-ng when it
is installed; medians and ratios. Plus the per-command SSH latency and the guest-image build times.

    python bench/boot.py [--kernel debian:6.1 --kernel debian:sid] [--runs 5] [--accel tcg] [--no-cold-image]

"""
from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.vm import kernel as kernel_mod  # noqa: E402
from harness.vm.host import Paths  # noqa: E402
from harness.vm.image import build_initramfs, build_modules_disk, build_rootfs  # noqa: E402
from harness.vm.vm import VM, VMOptions, canary_boot, pick_accel  # noqa: E402


def med(xs):
    return f"{statistics.median(xs):6.2f}s (min {min(xs):.2f}, max {max(xs):.2f}, n={len(xs)})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kernel", action="append", default=[])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--commands", type=int, default=20, help="SSH commands timed per boot")
    ap.add_argument("--accel", default="auto", choices=("auto", "kvm", "tcg"))
    ap.add_argument("--no-cold-image", action="store_true", help="skip the cold mmdebstrap image build")
    ap.add_argument("--keep", action="store_true", help="keep the guests' console logs (else removed after a run "
                    "that finished; a failed one keeps them)")
    ap.add_argument("--cpu", action="append", default=[], metavar="MODEL",
                    help="QEMU -cpu model(s) to compare (default: the harness default for the accelerator)")
    args = ap.parse_args()
    paths = Paths.default()
    specs = args.kernel or list(kernel_mod.DEFAULT_KERNELS)
    work = Path(tempfile.mkdtemp(prefix="ph-bench-boot-"))

    print("== guest image")
    if not args.no_cold_image:
        cold = build_rootfs(Paths(work / "cold-cache"), force=True, log=lambda s: None)
        print(f"cold build (mmdebstrap + mkfs.ext4): {cold.build_seconds:.1f}s")
    t = time.monotonic()
    image = build_rootfs(paths, log=lambda s: None)
    print(f"warm (cached) lookup: {time.monotonic() - t:.3f}s  -> {image.rootfs}")

    for spec in specs:
        k = kernel_mod.resolve(spec, paths)
        build_initramfs(k, paths)
        build_modules_disk(k, paths)
        accel = pick_accel(args.accel, k, paths, work / "accel", log=lambda s: None)
        for cpu in args.cpu or [None]:
            bench_kernel(k, image, paths, work, accel, cpu, args.runs, args.commands, spec)
    if args.keep:
        print(f"console logs kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def whole_command(spec: str, accel: str, extra: list[str]) -> float:
    """`python -m harness boot --kernel SPEC 'uname -r'`, wall time from launch to exit."""
    argv = [sys.executable, "-m", "harness", "boot", "--kernel", spec, "--accel", accel, *extra, "uname -r"]
    t = time.monotonic()
    subprocess.run(argv, check=True, capture_output=True, timeout=600, cwd=Path(__file__).resolve().parent.parent)
    return time.monotonic() - t


def virtme_ng(k) -> float | None:
    """virtme-ng on the same kernel image, when installed: `vng -r IMAGE --disable-kvm -- uname -r`."""
    vng = shutil.which("vng")
    if vng is None:
        return None
    t = time.monotonic()
    subprocess.run([vng, "-r", str(k.image), "--disable-kvm", "--force-9p", "--", "uname", "-r"],
                   capture_output=True, timeout=600)
    return time.monotonic() - t


def first_command(k, image, paths, workdir, opts, accel) -> float:
    """A guest from launch to the output of its first command (`uname -r`)."""
    t = time.monotonic()
    with VM(k, image, paths, workdir, opts, accel=accel, log=lambda s: None) as vm:
        vm.run("uname -r", timeout=60, check=True)
        return time.monotonic() - t


def bench_kernel(k, image, paths, work, accel, cpu, runs, commands, spec) -> None:
    """Each round runs every variant once (interleaved, so drift hits all alike)."""
    times: dict[str, list[float]] = {}
    cmds: list[float] = []
    tag = f"{k.name}-{cpu or 'default'}"
    restore_opts = VMOptions(accel=accel.accel, cpu_model=cpu)
    first_command(k, image, paths, work / f"{tag}-snapshot", restore_opts, accel)  # the snapshot, saved once
    RESTORE = "restore from snapshot, launch -> first command output"
    COLD = "cold boot (PVH), launch -> first command output"
    for i in range(runs):
        for pvh in (False, True):
            label = "PVH vmlinux" if pvh else "bzImage"
            t = time.monotonic()
            canary_boot(k, paths, work / f"{tag}-bare-{pvh}-{i}", accel=accel.accel, timeout=120, silence=120,
                        cpu_model=cpu, options=VMOptions(accel=accel.accel, cpu_model=cpu, pvh=pvh))
            times.setdefault(f"bare QEMU + busybox initramfs ({label}), launch -> userspace", []).append(
                time.monotonic() - t)
        cold_opts = VMOptions(accel=accel.accel, cpu_model=cpu, snapshot=False)
        times.setdefault(COLD, []).append(first_command(k, image, paths, work / f"{tag}-cold-{i}", cold_opts, accel))
        times.setdefault(RESTORE, []).append(
            first_command(k, image, paths, work / f"{tag}-restore-{i}", restore_opts, accel))
        for label, extra in (("--no-snapshot", ["--no-snapshot"]), ("snapshot", [])):
            times.setdefault(f"`python -m harness boot 'uname -r'` ({label}), whole command", []).append(
                whole_command(spec, accel.accel, extra))
        vng = virtme_ng(k)
        if vng is not None:
            times.setdefault("virtme-ng `vng -r IMAGE --disable-kvm -- uname -r`, whole command", []).append(vng)
    with VM(k, image, paths, work / f"{tag}-rtt", restore_opts, accel=accel, log=lambda s: None) as vm:
        for _ in range(commands):
            t1 = time.monotonic()
            vm.run("true", timeout=60)
            cmds.append(time.monotonic() - t1)
    print(f"== {k.name} ({k.release}) under {accel.accel}, -cpu {cpu or 'default'}")
    for label, xs in times.items():
        print(f"{label:80} {med(xs)}")
    print(f"{'SSH command round trip (`true`)':80} {statistics.median(cmds) * 1000:6.1f} ms (n={len(cmds)})")
    cold, restore = statistics.median(times[COLD]), statistics.median(times[RESTORE])
    print(f"{'ratio cold boot / restore':80} {cold / restore:6.2f}x")
    if "virtme-ng `vng -r IMAGE --disable-kvm -- uname -r`, whole command" in times:
        vng = statistics.median(times["virtme-ng `vng -r IMAGE --disable-kvm -- uname -r`, whole command"])
        ours = statistics.median(times["`python -m harness boot 'uname -r'` (snapshot), whole command"])
        print(f"{'ratio virtme-ng / harness boot (snapshot)':80} {vng / ours:6.2f}x")


if __name__ == "__main__":
    sys.exit(main())
