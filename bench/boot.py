#!/usr/bin/env python3
"""Boot latency: launch→ready and per-command SSH latency (median of N) per kernel,
side by side with bare QEMU + a busybox initramfs on the same kernel; plus cold
and warm guest-image build times.

    python bench/boot.py [--kernel debian:6.1 --kernel debian:6.12] [--runs 5] [--accel tcg] [--no-cold-image]
"""
from __future__ import annotations

import argparse
import statistics
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
            bench_kernel(k, image, paths, work, accel, cpu, args.runs, args.commands)
    return 0


def bench_kernel(k, image, paths, work, accel, cpu, runs, commands) -> None:
    bare, full, cmds, first_cmd = [], [], [], []
    tag = f"{k.name}-{cpu or 'default'}"
    for i in range(runs):
        bare.append(canary_boot(k, paths, work / f"{tag}-bare-{i}", accel=accel.accel, timeout=120,
                                silence=120, cpu_model=cpu))
        t = time.monotonic()
        with VM(k, image, paths, work / f"{tag}-full-{i}", VMOptions(accel=accel.accel, cpu_model=cpu),
                accel=accel, log=lambda s: None) as vm:
            full.append(time.monotonic() - t)
            t1 = time.monotonic()
            vm.run("true", timeout=60)
            first_cmd.append(time.monotonic() - t1)
            for _ in range(commands):
                t1 = time.monotonic()
                vm.run("true", timeout=60)
                cmds.append(time.monotonic() - t1)
    print(f"== {k.name} ({k.release}) under {accel.accel}, -cpu {cpu or 'default'}")
    print(f"bare QEMU + busybox initramfs, launch -> userspace marker: {med(bare)}")
    print(f"pinharness guest, launch -> ready (sshd up, SSH connected):  {med(full)}")
    print(f"first SSH command after ready:                             {med(first_cmd)}")
    print(f"SSH command round trip (`true`):                           "
          f"{statistics.median(cmds) * 1000:6.1f} ms (n={len(cmds)})")


if __name__ == "__main__":
    sys.exit(main())
