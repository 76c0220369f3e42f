"""Synthetic matrix cells, written the way matrix.run_cell writes them (cell.json from a CellResult,
kernel.json from Kernel.record, reports.txt from the crash parser, fsck.txt, vm/console.log)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from harness.crash import console
from harness.crash.report import write_reports
from harness.pins.matrix import Cell, CellResult
from harness.pins.repro.finding import KERNEL_FILE, config_options
from harness.pins.workloads import WORKLOADS
from harness.vm.kernel import Kernel

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "console"
WARNING_LOG = GOLDEN / "guest-debian61-odirect-ext4-warning.log"
RELEASE = "6.1.0-57-amd64"
BASE_CONFIG = ["CONFIG_LRU_GEN=y", "# CONFIG_LRU_GEN_ENABLED is not set", "CONFIG_TRANSPARENT_HUGEPAGE=y",
               "CONFIG_TRANSPARENT_HUGEPAGE_ALWAYS=y", "CONFIG_MEMCG=y", "CONFIG_EXT4_FS=m", "CONFIG_XFS_FS=m"]
CONFIG = "\n".join([  # then the workloads' options the lines above do not set, as modules
    *BASE_CONFIG, *(f"CONFIG_{o}=m" for w in WORKLOADS.values() for o in w.kconfig
                    if not any(line.startswith(f"CONFIG_{o}=") for line in BASE_CONFIG)),
]) + "\n"
DEB = {"package": f"linux-image-{RELEASE}-unsigned", "version": "6.1.192-3",
       "url": f"https://deb.debian.org/debian-security/pool/updates/main/l/linux/linux-image-{RELEASE}-unsigned_"
              "6.1.192-3_amd64.deb", "sha256": "ab" * 32, "size": 70 << 20}


def fake_kernel(root: Path, modules: Optional[Path] = None) -> Kernel:
    root.mkdir(parents=True, exist_ok=True)
    (root / "config").write_text(CONFIG)
    (root / "vmlinuz").write_bytes(b"not a kernel")
    return Kernel(name="debian-6.1", source="debian:6.1", image=root / "vmlinuz", release=RELEASE,
                  modules_dir=modules, config_path=root / "config",
                  extra={"package": DEB["package"], "debian_version": DEB["version"], "suite": "bookworm-security",
                         "dbg": None, "debs": [DEB]})


def make_cell(base: Path, workload: str, fs: str = "ext4", stressors: Optional[tuple] = None, bug: bool = True,
              kernel: Optional[Kernel] = None, runs: int = 1) -> Path:
    """A cell directory as run_cell leaves it; ``bug``: the 6.1 WARNING + all pages lost, else clean."""
    spec = WORKLOADS[workload]
    cell = Cell("debian:6.1", workload, fs, tuple(stressors or spec.default_stressors))
    workdir = base / "results" / "2026-11-30T12-00-00" / cell.id
    (workdir / "vm").mkdir(parents=True)
    kernel = kernel or fake_kernel(base / "kernel")
    (workdir / KERNEL_FILE).write_text(json.dumps(kernel.record(config_options(workload)), indent=1))
    log = WARNING_LOG.read_text() if bug else "[    1.0] Linux version 6.1.0-57-amd64\n"
    reports = console.parse(log)
    titles = list(dict.fromkeys(r.title for r in reports))
    lost = 16 if bug else 0
    res = CellResult(cell, release=RELEASE, status="KNOWN-BUG" if bug else "EXPECTED", ok=True,
                     outcome="+".join([f"WARNING({t})" for t in titles] + ([f"DATA-LOSS({lost})"] if lost else []))
                     or "CLEAN", kind="DATA-LOSS" if bug else "CLEAN", titles=titles, lost_pages=lost,
                     device_pages=16, expect="WARNING(WARNING in ext4_dirty_folio)+DATA-LOSS(all)" if bug else "CLEAN",
                     bug=bug, fsck_clean=True, accel="tcg", artifacts=str(workdir),
                     run={"workload": workload, "fs": fs, "stressors": list(cell.stressors),
                          "result": {"workload": workload, "pages": 16, "device_wrote_B": 16, "pin": {"errno": 0}},
                          "verify": {"verify": True, "pages": 16, "A": lost, "B": 16 - lost}, "lost_pages": lost})
    d = res.to_dict()
    if runs > 1:  # a confirmed cell (the confirm branch's fields)
        d.update(runs=runs, reproduced=runs - 1)
    (workdir / "cell.json").write_text(json.dumps(d, indent=1))
    (workdir / "vm" / "console.log").write_text(log)
    (workdir / "workload-console.log").write_text(log)
    (workdir / "fsck.txt").write_text("e2fsck 1.47.0 (5-Feb-2023)\nPass 1: Checking inodes, blocks, and sizes\n")
    if reports:
        write_reports(workdir / "reports.txt", reports, None)
    return workdir
