"""REPORT.md: a finding as a mail to linux-mm / the file system's list, syzbot's shape: subject,
kernel and config, what was expected against what happened, the rate, the trace, the command."""
from __future__ import annotations

import re
from typing import Optional

from harness.pins import oracle
from harness.pins.repro.finding import Finding
from harness.pins.stressors import STRESSORS

# Guilty-file prefixes -> the subsystem tag of the subject ("[ext4?]"), first match wins.
SUBSYSTEMS = (("fs/ext4/", "ext4"), ("fs/xfs/", "xfs"), ("fs/iomap/", "iomap"), ("fs/", "fs"), ("mm/", "mm"),
              ("block/", "block"), ("drivers/vfio/", "vfio"), ("drivers/infiniband/", "rdma"),
              ("net/xdp/", "bpf"), ("io_uring/", "io-uring"), ("drivers/vhost/", "kvm"), ("virt/kvm/", "kvm"))
FS_SUBSYSTEM = {"ext4": "ext4", "xfs": "xfs"}


def subsystem(f: Finding) -> str:
    m = re.search(r"^guilty file: (\S+)", f.reports, re.M)
    if m:
        for prefix, tag in SUBSYSTEMS:
            if m.group(1).startswith(prefix):
                return tag
    return FS_SUBSYSTEM.get(f.fs, "mm")


def subject(f: Finding) -> str:
    loss = f" ({f.lost_pages}/{f.device_pages} pages lost)" if f.lost_pages else ""
    return f"[BUG] [{subsystem(f)}?] {f.headline}{loss}"


def rate(f: Finding) -> str:
    note = "" if f.runs > 1 else " (the cell ran once)"
    return f"{f.reproduced}/{f.runs} runs{note}"


def _version(release: str) -> tuple[int, ...]:
    m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", release)
    return tuple(int(x or 0) for x in m.groups()) if m else (0,)


def expectation(f: Finding) -> Optional[oracle.Expectation]:
    config = (f.kernel or {}).get("config_values") or None
    return oracle.expectation(_version(f.release), f.workload, f.fs, f.stressors, config=config)


def expected_text(f: Finding) -> str:
    if f.pin_errno:
        return "the device's writes either refused up front (as here) or on disk after writeback"
    return (f"all {f.device_pages or f.pages} pages the device wrote into the pinned mapping are on disk after "
            f"unpin + fsync + remount (read back with O_DIRECT), no kernel warning, a clean {f.fs} check")


def happened_text(f: Finding) -> str:
    parts = []
    if f.titles:
        parts.append("the kernel logged " + "; ".join(f"`{t}`" for t in dict.fromkeys(f.titles)))
    if f.pin_errno:
        parts.append(f"the pin was refused ({oracle.errno_name(f.pin_errno)})")
    elif f.device_pages:
        parts.append(f"{f.lost_pages} of {f.device_pages} pages the device wrote are not on disk "
                     "(the file still holds the old pattern A there)" if f.lost_pages
                     else f"all {f.device_pages} pages the device wrote are on disk")
    if f.fsck_clean is not None:
        parts.append(f"the {f.fs} check of the disk afterwards is " + ("clean" if f.fsck_clean else "NOT clean"))
    return "; ".join(parts) or f.outcome or "nothing"


def config_lines(f: Finding) -> list[str]:
    values = (f.kernel or {}).get("config_values") or {}
    return [f"{k}={v}" if v != "n" else f"# {k} is not set" for k, v in values.items()] or \
        ["(the cell recorded no config: add the kernel's config file)"]


def render(f: Finding, name: str, files: dict) -> str:
    k = f.kernel or {}
    deb = k.get("debian") or {}
    exp = expectation(f)
    package = (f"Debian {deb.get('package')} {deb.get('debian_version', '')} ({deb.get('suite', '')})"
               if deb.get("package") else k.get("source") or f.kernel_spec)
    stressors = [f"{n} ({STRESSORS[n].description})" for n in f.stressors if n != "none"]
    lines = [
        f"Subject: {subject(f)}",
        "",
        "Hello,",
        "",
        f"a harness that races long-term page pins against {f.fs} writeback and reclaim hit the following",
        f"on {f.release} ({package}), under QEMU ({f.accel or 'TCG'}). Reproduction rate: {rate(f)}.",
        "",
        f"Workload: {f.workload}: {f.spec.description}.",
        f"File system: {f.fs} on a fresh 512 MiB virtio disk (mkfs defaults). "
        f"Stressors: {', '.join(stressors) or 'none'}.",
        "",
        "What the program does (every workload has this shape): write the file's pages with pattern A and",
        "fsync; map it MAP_SHARED; pin the mapping the way the driver does; let writeback and reclaim run while",
        "the pin is held (the stressors); let the \"device\" write pattern B into the pinned pages; unpin; fsync,",
        "remount, and read the file back with O_DIRECT: every page the device wrote must read back as B.",
        "",
        "## Kernel",
        "",
        f"- release: {f.release}",
        f"- from: {package}" + (f", kernel spec `{f.kernel_spec}`" if f.kernel_spec else ""),
        *(f"- package: {d['url']} (sha256 {d['sha256']})" for d in deb.get("debs") or []),
        "- config (the options that matter here" + (", full config in kernel.config)" if "kernel.config" in files
                                                     else ")") + ":",
        "",
        "```",
        *config_lines(f),
        "```",
        "",
        "## Expected against what happened",
        "",
        f"- expected: {expected_text(f)}",
        f"- happened: {happened_text(f)}",
        f"- outcome: `{f.outcome}`" + (f"; the harness's oracle expects `{exp.expect}` on this kernel: {exp.why}"
                                       if exp else ""),
        "",
        "## Reproducer",
        "",
        f"Attached {name}.tar.gz ({', '.join(sorted(n for n in files if n != 'REPORT.md'))}); no harness needed:",
        "",
        "```",
        f"tar xzf {name}.tar.gz && cd {name} && ./qemu.sh",
        "```",
        "",
        f"qemu.sh downloads {f.release} (or boots `KERNEL=... MODULES=...`), builds repro.c statically and a",
        "busybox initramfs, attaches the disks the harness used, runs repro.sh in the guest and exits with its",
        f"status. On an affected kernel it ends with `REPRODUCED: {f.headline}, {f.lost_pages}/{f.device_pages}"
        " pages lost` (exit 1); a fixed kernel prints `CLEAN: ...` (exit 0). On a test machine, as root:",
        "`./repro.sh --mnt /mnt/scratch" + (" --src /dev/SLOW" if f.spec.source_disk else "")
        + (" --fill /dev/SPARE" if any(STRESSORS[n].disk_mb for n in f.stressors) else "")
        + "` (`./repro.sh --help` says what each is).",
        "",
        "## Trace",
        "",
        "```",
        (f.reports.strip() or "(the kernel logged no report)"),
        "```",
    ]
    if f.fsck and f.fsck_clean is False:
        lines += ["", f"## {f.fs} check", "", "```", f.fsck.strip()[-3000:], "```"]
    return "\n".join(lines) + "\n"
