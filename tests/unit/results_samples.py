"""Synthetic matrix results built from the real model (Cell, CellResult, write_json, load),
so a change to the model breaks the renderer tests rather than passing them by accident."""
from __future__ import annotations

import errno
import json
from dataclasses import replace
from pathlib import Path

from harness.results import model as results
from harness.pins.matrix import Cell, CellResult

EVIL_TITLE = 'BUG: <script>alert("x")</script> in xfs_|pipe|*bold*_&amp #1'
WARN_TITLE = "WARNING in ext4_dirty_folio"
REPORT = """TITLE: WARNING in ext4_dirty_folio
TYPE: WARNING
WARNING: CPU: 1 PID: 7386 at fs/ext4/inode.c:3600 ext4_dirty_folio+0xf4/0x110 fs/ext4/inode.c:3600
Call Trace:
 folio_mark_dirty+0x6f/0xa0 mm/page-writeback.c:2866
 unpin_user_pages_dirty_lock+0x10e/0x190 mm/gup.c:350
"""
KERNELS = {"debian:6.1": {"name": "debian-6.1", "source": "debian:6.1", "release": "6.1.0-26-amd64",
                          "image": "/cache/vmlinuz-6.1"},
           "debian:6.12": {"name": "debian-6.12", "source": "debian:6.12", "release": "6.12.9-amd64",
                           "image": "/cache/vmlinuz-6.12"}}


def cell_results(artifacts: Path) -> list[CellResult]:
    """One cell of each kind of verdict the renderers must handle."""
    def res(kernel, workload, fs, stressors, **kw):
        cell = Cell(kernel, workload, fs, tuple(stressors))
        kw.setdefault("release", KERNELS[kernel]["release"])
        return CellResult(cell, artifacts=str(artifacts / cell.id), accel="tcg", seconds=41.5, **kw)

    return [
        res("debian:6.1", "odirect", "ext4", ["reclaim"], status="KNOWN-BUG", ok=True, kind="DATA-LOSS",
            outcome=f"WARNING({WARN_TITLE})+DATA-LOSS(16)", titles=[WARN_TITLE], lost_pages=16, device_pages=16,
            expect="WARNING(WARNING in ext4_dirty_folio)+DATA-LOSS", bug=True, detail="as expected"),
        res("debian:6.1", "odirect", "xfs", ["reclaim"], status="UNEXPECTED", ok=False, kind="DATA-LOSS",
            outcome="DATA-LOSS(3)", lost_pages=3, device_pages=16, expect="CLEAN",
            detail="DATA-LOSS(3): unexpected loss of 3 pages"),
        res("debian:6.12", "odirect", "ext4", ["reclaim"], status="EXPECTED", ok=True, kind="PROTECTED",
            outcome="PROTECTED(EFAULT)", pin_errno=errno.EFAULT, expect="PROTECTED(EFAULT)"),
        res("debian:6.12", "io_uring", "xfs", ["none"], status="CRASH", ok=False, kind="CRASH",
            outcome=f"CRASH({EVIL_TITLE})", titles=[EVIL_TITLE], detail="GuestPanic: kernel panic\x1b[0m"),
        res("debian:6.12", "vfio", "ext4", ["bh-fill", "reclaim"], status="SKIP",
            detail="debian-6.12 lacks CONFIG_VFIO_PCI"),
        res("debian:6.1", "io_uring", "ext4", ["none"], status="ERROR", kind="ERROR",
            detail="BootTimeout: no login prompt in 300 s"),
        res("debian:6.12", "io_uring", "ext4", ["none"], status="NO-ORACLE", ok=False, kind="CLEAN",
            outcome="CLEAN", detail="no oracle row; observed CLEAN"),
    ]


def write_artifacts(cells: list[CellResult]) -> None:
    for r in cells:
        d = Path(r.artifacts)
        (d / "vm").mkdir(parents=True, exist_ok=True)
        (d / "vm" / "console.log").write_text(f"[    0.0] Linux version {r.release}\n[    1.0] login:\n")
        if r.titles:
            text = REPORT if r.titles == [WARN_TITLE] else f"TITLE: {r.titles[0]}\nTYPE: BUG\n{r.titles[0]}\n"
            (d / "reports.txt").write_text(text)
        (d / "cell.json").write_text(json.dumps(r.to_dict()))
        write_artifacts(r.attempts[1:])


def sample_run(directory: Path, cells: list[CellResult] | None = None, **meta) -> results.RunResults:
    """Write a results directory (results.json + cell artifacts) and load it back."""
    directory.mkdir(parents=True, exist_ok=True)
    cells = cell_results(directory) if cells is None else cells
    write_artifacts(cells)
    meta = {"kernels": KERNELS, "accel": "tcg", "accel_reason": "no /dev/kvm", "seconds": 290.5, **meta}
    results.write_json(cells, directory / "results.json", meta)
    return results.load(directory / "results.json")


def with_changes(cells: list[CellResult], directory: Path, **changes_by_id) -> list[CellResult]:
    """Copies of ``cells`` moved to ``directory``, the ones named by id changed (dataclasses.replace)."""
    out = []
    for r in cells:
        cell_dir = str(directory / r.cell.id)
        out.append(replace(r, artifacts=cell_dir, **changes_by_id.get(r.cell.id, {})))
    return out


def confirmed_results(artifacts: Path) -> list[CellResult]:
    """Cells that ran three times (pins/confirm.py): a reproduced surprise, a flaky one, a known bug at 2/3."""
    def runs(kernel, workload, fs, stressors, status, ok, outcomes, reproduced, **kw):
        cell = Cell(kernel, workload, fs, tuple(stressors))
        attempts = []
        for n, (st, outcome) in enumerate(outcomes, 1):
            where = artifacts / (cell.id if n == 1 else f"attempt-{n}/{cell.id}")
            attempts.append(CellResult(cell, release=KERNELS[kernel]["release"], status=st, ok=st in ("EXPECTED", "KNOWN-BUG"),
                                       outcome=outcome, kind=outcome.split("(")[0], artifacts=str(where), seconds=30.0,
                                       titles=[WARN_TITLE] if WARN_TITLE in outcome else []))
        first = attempts[0]
        return replace(first, status=status, ok=ok, runs=len(attempts), reproduced=reproduced, attempts=attempts, **kw)

    leak = "PIN-LEAK(1)"
    bug = f"WARNING({WARN_TITLE})+DATA-LOSS(16)"
    return [
        runs("debian:6.12", "kvm", "xfs", ["bh-fill", "reclaim"], "UNEXPECTED", False,
             [("UNEXPECTED", leak)] * 3, 3, expect="CLEAN", detail="PIN-LEAK(1): pin leak of 1"),
        runs("debian:6.12", "kvm", "ext4", ["bh-fill", "reclaim"], "FLAKY", True,
             [("UNEXPECTED", leak), ("EXPECTED", "CLEAN"), ("EXPECTED", "CLEAN")], 1, expect="CLEAN"),
        runs("debian:6.1", "vfio", "ext4", ["bh-fill", "reclaim"], "KNOWN-BUG", True,
             [("KNOWN-BUG", bug), ("UNEXPECTED", "CLEAN"), ("KNOWN-BUG", bug)], 2, bug=True,
             expect="WARNING(WARNING in ext4_dirty_folio)+DATA-LOSS(all)"),
    ]
