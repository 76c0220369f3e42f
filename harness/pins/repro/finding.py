"""A finding as a matrix cell left it on disk: cell.json (what ran, what happened, how often),
kernel.json (which kernel, where its packages come from, the config options that matter),
reports.txt (the symbolized crash reports) and fsck.txt."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from harness.errors import HarnessError
from harness.pins import stressors as stressors_mod
from harness.pins.workloads import WORKLOADS, WorkloadSpec, needed_config

KERNEL_FILE = "kernel.json"  # written by matrix.run_cell beside cell.json
# The options a maintainer asks about first (the pin paths' own come from the workload's kconfig).
CONFIG_OPTIONS = ("LRU_GEN", "LRU_GEN_ENABLED", "TRANSPARENT_HUGEPAGE", "TRANSPARENT_HUGEPAGE_ALWAYS",
                  "TRANSPARENT_HUGEPAGE_MADVISE", "MEMCG", "EXT4_FS", "XFS_FS", "BUFFER_HEAD")


def config_options(workload: str) -> tuple[str, ...]:
    """CONFIG_ names worth quoting for a finding of ``workload``."""
    return tuple(dict.fromkeys(CONFIG_OPTIONS + needed_config(WORKLOADS[workload])))


@dataclass(frozen=True)
class Finding:
    """One cell's result, read back from its directory."""

    directory: Path
    cell_id: str
    kernel_spec: str
    workload: str
    fs: str
    stressors: tuple[str, ...]
    release: str
    status: str  # the verdict: KNOWN-BUG, UNEXPECTED, EXPECTED...
    outcome: str  # e.g. WARNING(WARNING in ext4_dirty_folio)+DATA-LOSS(16)
    titles: tuple[str, ...]
    lost_pages: int
    device_pages: int
    pin_errno: int
    expect: str  # the oracle's expectation ('' without a row)
    fsck_clean: Optional[bool]
    accel: str
    runs: int  # how often the cell ran (confirmation re-runs), and how many showed this outcome
    reproduced: int
    pages: int  # the file's size in pages
    reports: str  # reports.txt ('' when the kernel said nothing)
    fsck: str
    kernel: dict = field(default_factory=dict)  # kernel.json ({} for a cell from an older harness)

    @property
    def spec(self) -> WorkloadSpec:
        return WORKLOADS[self.workload]

    @property
    def bug(self) -> bool:
        """The kernel misbehaved: a report, or pages the device wrote that never reached the disk."""
        return bool(self.titles or self.lost_pages)

    @property
    def headline(self) -> str:
        return self.titles[0] if self.titles else ("data loss" if self.lost_pages else self.outcome or "clean")


def _read_json(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise HarnessError(f"{path} missing: give the directory of one matrix cell "
                           f"(results/<run>/<cell>/, the one holding {what})") from None
    except (OSError, ValueError) as exc:
        raise HarnessError(f"{path} cannot be read ({exc}): re-run the cell") from None


def _text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def load(directory: Path) -> Finding:
    """The finding in a cell directory; a one-line HarnessError when it is not one."""
    directory = Path(directory)
    if not directory.is_dir():
        raise HarnessError(f"{directory} is not a directory: give RESULTS_DIR/CELL (a directory with cell.json)")
    d = _read_json(directory / "cell.json", "cell.json")
    cell = d.get("cell") or {}
    workload = cell.get("workload", "")
    if workload not in WORKLOADS:
        raise HarnessError(f"{directory / 'cell.json'}: unknown workload {workload!r} (one of {', '.join(WORKLOADS)})")
    if d.get("status") in ("SKIP", "NOT-RUN") or not d.get("run"):
        raise HarnessError(f"{directory}: the cell did not run its workload ({d.get('status')}: "
                           f"{d.get('detail', '')}): nothing to reproduce")
    kernel = _read_json(directory / KERNEL_FILE, KERNEL_FILE) if (directory / KERNEL_FILE).exists() else {}
    run = d.get("run") or {}
    return Finding(
        directory=directory, cell_id=cell.get("id", directory.name), kernel_spec=cell.get("kernel", ""),
        workload=workload, fs=cell.get("fs", "ext4"), stressors=stressors_mod.parse(cell.get("stressors") or ["none"]),
        release=d.get("release", "") or kernel.get("release", ""), status=d.get("status", ""),
        outcome=d.get("outcome", ""), titles=tuple(d.get("titles") or ()), lost_pages=int(d.get("lost_pages") or 0),
        device_pages=int(d.get("device_pages") or 0), pin_errno=int(d.get("pin_errno") or 0),
        expect=d.get("expect", ""), fsck_clean=d.get("fsck_clean"), accel=d.get("accel", ""),
        **_rate(directory, cell.get("id", directory.name), d),
        pages=int((run.get("result") or {}).get("pages") or run.get("verify", {}).get("pages") or 16),
        reports=_text(directory / "reports.txt"), fsck=_text(directory / "fsck.txt"), kernel=kernel)


def _rate(directory: Path, cell_id: str, cell_doc: dict) -> dict:
    """runs/reproduced: cell.json is one run's; a confirmed cell's rate is in the run's results.json."""
    results = directory.parent / "results.json"
    if results.exists():
        try:
            for c in json.loads(results.read_text()).get("cells", []):
                if c.get("id") == cell_id or (c.get("cell") or {}).get("id") == cell_id:
                    return {"runs": int(c.get("runs") or 1), "reproduced": int(c.get("reproduced") or 1)}
        except (ValueError, OSError):
            pass
    return {"runs": int(cell_doc.get("runs") or 1), "reproduced": int(cell_doc.get("reproduced") or 1)}

