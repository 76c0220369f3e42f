"""Stressors: what runs around a pinned workload to make writeback and reclaim
touch the pinned pages. A table of shell steps; combine with '+' (e.g.
"mglru-off+bh-fill"). "reclaim" is done by the workload itself at the moment
its pages are held (memory.reclaim of its cgroup), and so are the ``while_held``
steps (fsfreeze, punch-hole, truncate): the workload runs them from
PH_WHILE_HELD right after writeback and reclaim, with the pin still held.
Commands may name the scratch mount point and the pinned file as @MNT@ and @FILE@."""
from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from harness.errors import HarnessError
from harness.vm.image import Disk
from harness.vm.vm import disk_by_serial_shell

BHFILL_MB = 280


@dataclass(frozen=True)
class Stressor:
    name: str
    description: str
    setup: tuple[str, ...] = ()  # run before the workload (each must succeed, or the stressor is noted as skipped)
    background: str = ""  # runs while the workload runs (killed after)
    teardown: tuple[str, ...] = ()
    requires: str = ""  # a guest path that must exist for the stressor to apply
    disk_mb: int = 0  # an extra empty disk of this size (serial ph-bhfill)
    vm: tuple = ()  # VMOptions the stressor needs, as (name, value) pairs
    while_held: str = ""  # shell the workload runs while its pin is held (after writeback and reclaim)
    keeps_data: bool = True  # False: it rewrites the pinned range, so lost pages are not counted
    tools: tuple[str, ...] = ()  # commands its steps run beyond a shell's basics (a repro's initramfs copies them)


DISK_DEV = "$(" + disk_by_serial_shell("ph-bhfill") + ")"

STRESSORS: dict[str, Stressor] = {
    "none": Stressor("none", "nothing besides the workload"),
    "reclaim": Stressor("reclaim", "memory.reclaim of the workload's cgroup while its pages are held (in-workload)"),
    "mglru-off": Stressor("mglru-off", "multi-gen LRU off: classic active/inactive lists",
                          setup=("echo n > /sys/kernel/mm/lru_gen/enabled",),
                          teardown=("echo y > /sys/kernel/mm/lru_gen/enabled",),
                          requires="/sys/kernel/mm/lru_gen/enabled"),
    "bh-fill": Stressor(
        "bh-fill", f"push buffer_heads_over_limit: {BHFILL_MB} MiB of buffered I/O on a raw disk with 512-byte "
                   "blocks (written once: mpage readahead attaches no buffers, block_write_begin does; then read "
                   "twice so the pages are active), so reclaim strips buffers of active folios. A holder keeps the "
                   "disk open: the last close of a block device drops its page cache (kill_bdev)",
        setup=(f"dev={DISK_DEV}; setsid sh -c \"exec 9<$dev; exec sleep 1000000\" </dev/null >/dev/null 2>&1 & "
               "echo $! > /run/ph-bhfill-holder.pid",
               f"dev={DISK_DEV}; blockdev --setbsz 512 $dev && "
               f"dd if=/dev/zero of=$dev bs=1M count={BHFILL_MB} conv=fsync status=none && "
               f"dd if=$dev of=/dev/null bs=1M count={BHFILL_MB} status=none && "
               f"dd if=$dev of=/dev/null bs=1M count={BHFILL_MB} status=none && "
               "grep -E '^buffer_head ' /proc/slabinfo | awk '{print \"buffer_heads:\", $2}'",),
        teardown=("kill $(cat /run/ph-bhfill-holder.pid)",),
        disk_mb=BHFILL_MB + 16, tools=("blockdev", "dd", "setsid"),
        vm=(("memory_mb", 512),)),  # max_buffer_heads is 10% of lowmem: 280 MiB of 512-byte buffers exceed it
    "sync-loop": Stressor("sync-loop", "sync every 100 ms", background="while :; do sync; sleep 0.1; done"),
    "drop-caches": Stressor("drop-caches", "drop clean page cache every 200 ms",
                            background="while :; do echo 1 > /proc/sys/vm/drop_caches; sleep 0.2; done"),
    "dirty-writeback": Stressor(
        "dirty-writeback", "aggressive writeback: dirty_expire 0.2 s, flusher every 0.1 s",
        setup=("echo 20 > /proc/sys/vm/dirty_expire_centisecs", "echo 10 > /proc/sys/vm/dirty_writeback_centisecs"),
        teardown=("echo 3000 > /proc/sys/vm/dirty_expire_centisecs",
                  "echo 500 > /proc/sys/vm/dirty_writeback_centisecs")),
    "memory-pressure": Stressor(
        "memory-pressure", "anonymous memory hog to 85% of MemTotal in the background",
        background="python3 -c 1 2>/dev/null; n=$(awk '/MemTotal/{print int($2*0.85/1024)}' /proc/meminfo); "
                   "while :; do head -c ${n}M /dev/zero | tail > /dev/null; done"),
    "fsfreeze": Stressor(
        "fsfreeze", "freeze the file system while the pin is held and thaw it 3 s later: the device's writes "
                    "and the unpin's dirtying land on a frozen fs",
        while_held="fsfreeze -f @MNT@ && { setsid sh -c 'sleep 3; fsfreeze -u \"$0\"' @MNT@ </dev/null >/dev/null 2>&1 & "
                   "echo $! > /run/ph-thaw.pid; }", tools=("fsfreeze", "setsid"),
        # wait for the thaw (at most 3 s): while it runs it holds the mount point the harness unmounts next
        teardown=("p=$(cat /run/ph-thaw.pid 2>/dev/null); rm -f /run/ph-thaw.pid; "
                  "while [ -n \"$p\" ] && kill -0 $p 2>/dev/null; do sleep 0.1; done; fsfreeze -u @MNT@",)),
    "punch-hole": Stressor(
        "punch-hole", "punch a hole over the whole pinned file while the pin is held: its pages leave the "
                      "page cache under the pin (no data-loss count: the range is meant to read as zeros)",
        while_held="fallocate --punch-hole --offset 0 --length $(stat -c %s @FILE@) @FILE@", keeps_data=False,
        tools=("fallocate", "stat")),
    "truncate": Stressor(
        "truncate", "truncate the pinned file to 0 and back to its size while the pin is held (no data-loss "
                    "count: the range is meant to read as zeros)",
        while_held="s=$(stat -c %s @FILE@) && truncate -s 0 @FILE@ && truncate -s $s @FILE@", keeps_data=False,
        tools=("truncate", "stat")),
}


def parse(spec: str | Sequence[str]) -> tuple[str, ...]:
    names = tuple(spec.split("+")) if isinstance(spec, str) else tuple(spec)
    unknown = [n for n in names if n not in STRESSORS]
    if unknown:
        raise HarnessError(f"unknown stressor {unknown[0]!r}: use one of {', '.join(STRESSORS)} (combine with +)")
    return names


def stressor_vm_options(names: Sequence[str]) -> dict:
    """VMOptions overrides the stressors need (e.g. bh-fill: a 512 MiB guest)."""
    out: dict = {}
    for n in names:
        out.update(dict(STRESSORS[n].vm))
    return out


def stressor_disks(names: Sequence[str], workdir: Path) -> list[Disk]:
    disks = []
    for n in names:
        mb = STRESSORS[n].disk_mb
        if mb:
            path = Path(workdir) / f"{n}.img"
            with open(path, "wb") as f:
                f.truncate(mb << 20)
            disks.append(Disk(path, "ph-bhfill"))
    return disks


def expand(cmd: str, mountpoint: str, file: str) -> str:
    return cmd.replace("@MNT@", shlex.quote(mountpoint)).replace("@FILE@", shlex.quote(file))


def while_held_command(names: Sequence[str], mountpoint: str, file: str) -> str:
    """PH_WHILE_HELD for these stressors: every while-held step, in order ('' when none)."""
    return " && ".join(f"{{ {expand(STRESSORS[n].while_held, mountpoint, file)}; }}"
                       for n in names if STRESSORS[n].while_held)


class Stressors:
    """Applies a set of stressors around a workload run in ``vm`` on ``file`` under ``mountpoint``."""

    def __init__(self, vm, names: Sequence[str], mountpoint: str = "/mnt/scratch", file: str = ""):
        self.vm = vm
        self.items = [STRESSORS[n] for n in names]
        self.notes: list[str] = []
        self._bg: list[str] = []
        self.mountpoint, self.file = mountpoint, file or f"{mountpoint}/pinned"

    @property
    def while_held(self) -> str:
        """The workload's PH_WHILE_HELD: every while-held step, in order."""
        return while_held_command([s.name for s in self.items], self.mountpoint, self.file)

    @property
    def keeps_data(self) -> bool:
        return all(s.keeps_data for s in self.items)

    def check_while_held(self, result: dict, workload: str) -> None:
        """Notes whether the workload ran the while-held steps, and how they ended."""
        names = "+".join(s.name for s in self.items if s.while_held)
        if not names:
            return
        if "while_held_status" not in result:
            self.notes.append(f"{names}: not applied: workload {workload} has no moment with the pin held")
        elif result["while_held_status"] != 0:
            self.notes.append(f"{names}: while-held steps failed (exit {result['while_held_status']})")
        else:
            self.notes.append(f"{names}: ran while the pin was held")
        if not self.keeps_data:
            self.notes.append(f"{names}: rewrites the pinned range: lost pages are not counted")

    def setup(self) -> None:
        for s in self.items:
            if s.requires and self.vm.run(f"test -e {s.requires}", timeout=30).exit_status != 0:
                self.notes.append(f"{s.name}: not applicable ({s.requires} missing)")
                continue
            for cmd in s.setup:
                res = self.vm.run(expand(cmd, self.mountpoint, self.file), timeout=600)
                if res.exit_status != 0:
                    self.notes.append(f"{s.name}: setup failed: {(res.stderr or res.stdout).strip()[-200:]}")
                elif res.stdout.strip():
                    self.notes.append(f"{s.name}: {res.stdout.strip()[-200:]}")
            if s.background:
                pidfile = f"/run/ph-stressor-{s.name}.pid"
                self.vm.run(f"setsid bash -c {shlex.quote(s.background)} </dev/null >/dev/null 2>&1 & "
                            f"echo $! > {pidfile}", timeout=30, check=True)
                self._bg.append(pidfile)

    def teardown(self) -> None:
        for pidfile in self._bg:
            self.vm.run(f"kill -- -$(cat {pidfile}) 2>/dev/null; kill $(cat {pidfile}) 2>/dev/null; true",
                        timeout=30)
        self._bg.clear()
        for s in self.items:
            for cmd in s.teardown:
                self.vm.run(expand(cmd, self.mountpoint, self.file) + " 2>/dev/null; true", timeout=60)
