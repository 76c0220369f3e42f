"""Benchmarks for the crash-report pipeline (prints figures, asserts only correctness).

1. Parse throughput: ``console.parse`` on a generated log (default 100 MB) of
   noise lines with real WARNING reports spliced in, in MB/s.
2. Symbolization of a 30-frame trace against Debian 6.1's debug vmlinux (and
   ext4.ko), side by side with binutils' addr2line on the same addresses: our
   cold run (empty cache), warm run (per-build-id cache), addr2line's run, and
   whether function/file/line agree for every frame (exit 1 if not).  When
   linux-source's scripts/decode_stacktrace.sh is given (--decode-script), it
   is timed on the same report too.

    python bench/report.py [--mb 100] [--vmlinux PATH] [--modules DIR] [--decode-script PATH]

Get the vmlinux and the ext4 debug module with ``python -m harness fetch-dbg --kernel debian:6.1``.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.crash import console  # noqa: E402
from harness.vm.host import Paths  # noqa: E402
from harness.crash.symbolize import Symbolizer, symbolize_text  # noqa: E402

# where `python -m harness fetch-dbg --kernel debian:6.1` puts them
DEBIAN = Paths.default().cache / "debian-dbg" / "6.1.0-56-amd64"
DEFAULT_VMLINUX = DEBIAN / "vmlinux"
DEFAULT_MODULES = DEBIAN / "modules"

# Plausible frames of the pin-vs-writeback traces (kernel, then the ext4 module).
KERNEL_FUNCS = [
    "folio_mark_dirty", "unpin_user_pages_dirty_lock", "__bio_release_pages", "iomap_dio_bio_end_io",
    "blk_update_request", "blk_mq_end_request", "__handle_irq_event_percpu", "handle_irq_event",
    "handle_edge_irq", "__common_interrupt", "common_interrupt", "do_writepages", "__writeback_single_inode",
    "writeback_sb_inodes", "__writeback_inodes_wb", "wb_writeback", "wb_workfn", "process_one_work",
    "worker_thread", "kthread", "shrink_folio_list", "shrink_inactive_list", "shrink_lruvec", "shrink_node",
    "balance_pgdat", "kswapd", "__iomap_dio_rw", "iomap_dio_rw", "bio_set_pages_dirty", "filemap_fdatawrite_wbc",
]
MODULE_FUNCS = ["ext4_dirty_folio", "mpage_prepare_extent_to_map", "ext4_do_writepages", "ext4_writepages",
                "ext4_file_read_iter", "ext4_dio_write_iter"]


def bench_parse(mb: int) -> float:
    warn = (ROOT / "tests/golden/console/bugzilla-205417-warning-ext4_set_page_dirty-module.log").read_text()
    noise = "".join(f"[{i / 1000:12.6f}] fio: wrote block {i} of /mnt/f{i % 7}\n" for i in range(2000))
    parts, size, i = [], 0, 0
    while size < mb * 1_000_000:
        chunk = warn if i % 50 == 0 else noise
        parts.append(chunk)
        size += len(chunk)
        i += 1
    text = "".join(parts)
    t0 = time.perf_counter()
    reports = console.parse(text)
    elapsed = time.perf_counter() - t0
    assert len(reports) == sum(1 for p in parts if p is warn), "parser missed reports"
    rate = len(text) / 1e6 / elapsed
    print(f"parse: {len(text) / 1e6:.1f} MB, {len(reports)} reports in {elapsed:.2f} s = {rate:.1f} MB/s")
    return rate


def build_trace(sym: Symbolizer, modules: bool) -> tuple[str, list[tuple[str, int, int, str | None]]]:
    """A 30-frame report; frame offsets are mid-function (return addresses, as in a real trace)."""
    frames = []
    for name in KERNEL_FUNCS:
        found = sym.kernel._symbols().get(name)
        if found:
            addr, size = found[0]
            frames.append((name, size // 2, size, None))
    if modules and sym.module("ext4") is not None:
        for name in MODULE_FUNCS:
            found = sym.module("ext4")._symbols().get(name)
            if found:
                frames.insert(0, (name, found[0][1] // 2, found[0][1], "ext4"))
    frames = frames[:30]
    lines = ["WARNING: CPU: 0 PID: 123 at fs/ext4/inode.c:3606 ext4_dirty_folio+0x5d/0x70 [ext4]",
             "Call Trace:", " <TASK>"]
    for name, off, size, mod in frames:
        lines.append(f" {name}+0x{off:x}/0x{size:x}" + (f" [{mod}]" if mod else ""))
    lines.append(" </TASK>")
    return "\n".join(lines) + "\n", frames


def addr2line_frames(binary: Path, addrs: list[int], section: str | None = None) -> list[list[tuple[str, str, int]]]:
    argv = ["addr2line", "-a", "-i", "-f", "-e", str(binary)] + (["-j", section] if section else [])
    out = subprocess.run(argv + [hex(a) for a in addrs], capture_output=True, text=True, check=True,
                         timeout=600).stdout.splitlines()
    groups: list[list[tuple[str, str, int]]] = []
    i = 0
    while i < len(out):
        if out[i].startswith("0x"):
            groups.append([])
            i += 1
            continue
        func, pos = out[i], out[i + 1].split(" ")[0]
        path, _, num = pos.rpartition(":")
        groups[-1].append((func, path, int(num) if num.isdigit() else 0))
        i += 2
    return groups


def same(ours: list[tuple[str, str, int]], theirs: list[tuple[str, str, int]]) -> bool:
    if len(ours) != len(theirs):
        return False
    return all(f1 == f2 and l1 == l2 and (p2 == p1 or p2.endswith("/" + p1))
               for (f1, p1, l1), (f2, p2, l2) in zip(ours, theirs))


def bench_symbolize(vmlinux: Path, modules: Path | None, decode_script: Path | None) -> bool:
    with tempfile.TemporaryDirectory() as cache:
        sym = Symbolizer(vmlinux, modules, Path(cache))
        report, frames = build_trace(sym, modules is not None)
        sym.close()
        print(f"symbolize: {len(frames)}-frame trace ({sum(1 for f in frames if f[3])} in ext4.ko) against {vmlinux.name}")

        t0 = time.perf_counter()
        sym = Symbolizer(vmlinux, modules, Path(cache) / "cold")
        decoded = symbolize_text(report, sym)
        sym.close()
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        sym = Symbolizer(vmlinux, modules, Path(cache) / "cold")
        warm_text = symbolize_text(report, sym)
        warm = time.perf_counter() - t0
        assert warm_text == decoded

        # Our answers per frame, and the addresses addr2line gets (return address - 1, like ours).
        ours, kernel_addrs, module_addrs = [], [], []
        for name, off, size, mod in frames:
            info = sym.kernel if mod is None else sym.module(mod)
            addr = info.symbol_address(name, size) + off - 1
            ours.append([(s.function, s.file, s.line) for s in info.source(addr)])
            if mod is None:
                kernel_addrs.append(addr)
            else:
                sect, rel = section_of(info, name, addr)
                module_addrs.append((info.path, sect, rel))
        sym.close()

    t0 = time.perf_counter()
    theirs_kernel = addr2line_frames(vmlinux, kernel_addrs)
    theirs_modules = [addr2line_frames(path, [rel], sect)[0] for path, sect, rel in module_addrs]
    a2l = time.perf_counter() - t0
    theirs = []
    ki = mi = 0
    for _, _, _, mod in frames:
        if mod is None:
            theirs.append(theirs_kernel[ki])
            ki += 1
        else:
            theirs.append(theirs_modules[mi])
            mi += 1

    agree = 0
    for (name, off, _, mod), mine, other in zip(frames, ours, theirs):
        ok = same(mine, other)
        agree += ok
        if not ok:
            print(f"  MISMATCH {name}+0x{off:x}{' [' + mod + ']' if mod else ''}:\n    ours      {mine}\n    addr2line {other}")
    print(f"  pinharness symbolize, cold cache: {cold:.2f} s")
    print(f"  pinharness symbolize, warm cache: {warm * 1000:.1f} ms")
    print(f"  addr2line -i (binutils), same addresses: {a2l:.2f} s")
    if decode_script is not None:
        t0 = time.perf_counter()
        subprocess.run(["bash", str(decode_script), str(vmlinux), "", str(modules or "")], input=report, text=True,
                       capture_output=True, timeout=1200)
        print(f"  decode_stacktrace.sh: {time.perf_counter() - t0:.2f} s")
    print(f"  file:line agreement with addr2line: {agree}/{len(frames)} frames "
          f"({sum(len(o) for o in ours)} source positions incl. inlined)")
    return agree == len(frames)


def section_of(info, name: str, addr: int) -> tuple[str, int]:
    """(section name, offset in it) of a module address, for addr2line -j."""
    elf = info._elf
    for idx, base in sorted(elf.section_bases.items(), key=lambda kv: kv[1], reverse=True):
        if addr >= base:
            sect = elf.get_section(idx)
            if addr < base + sect["sh_size"]:
                return sect.name, addr - base
    raise AssertionError(f"{name}: address outside the module's sections")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=100, help="size of the generated log for the parse benchmark")
    parser.add_argument("--vmlinux", type=Path, default=DEFAULT_VMLINUX)
    parser.add_argument("--modules", type=Path, default=DEFAULT_MODULES)
    parser.add_argument("--decode-script", type=Path, help="linux-source's scripts/decode_stacktrace.sh")
    args = parser.parse_args(argv)
    bench_parse(args.mb)
    if not args.vmlinux.exists():
        print(f"symbolize: skipped, {args.vmlinux} not found (see this file's docstring)")
        return 0
    modules = args.modules if args.modules.is_dir() else None
    return 0 if bench_symbolize(args.vmlinux, modules, args.decode_script) else 1


if __name__ == "__main__":
    sys.exit(main())
