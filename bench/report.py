"""Benchmarks for the crash-report pipeline (prints figures, asserts only correctness).

1. Parse throughput: ``console.parse`` on a generated log (default 100 MB) of
   noise lines with real WARNING reports spliced in, in MB/s.
1b. The same on an adversarial log (default 100 MB, made on the fly): syz
   programs with 8 KB hex blobs, long runs of file-name characters, and
   reports whose CONFIG_PRINTK_CALLER lines ([T…]/[C…]) are interleaved with
   other callers' hex lines and never end.  Prints MB/s and the slowest line
   shape (the parse time one such line adds to a report).  Goal: >= 20 MB/s,
   no line slower than 10 ms.
2. Symbolization of a 30-frame trace against Debian 6.1's debug vmlinux (and
   ext4.ko), side by side with binutils' addr2line on the same addresses: our
   cold run (empty cache), warm run (per-build-id cache), addr2line's run, and
   whether function/file/line agree for every frame (exit 1 if not).  When
   linux-source's scripts/decode_stacktrace.sh is given (--decode-script), it
   is timed on the same report too.

    python bench/report.py [--mb 100] [--adversarial-mb 100] [--vmlinux PATH] [--modules DIR] [--decode-script PATH]

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
    reports, elapsed, cpu = _timed_parse(text)
    assert len(reports) == sum(1 for p in parts if p is warn), "parser missed reports"
    rate = len(text) / 1e6 / elapsed
    print(f"parse: {len(text) / 1e6:.1f} MB, {len(reports)} reports in {elapsed:.2f} s = {rate:.1f} MB/s"
          f" ({len(text) / 1e6 / cpu:.1f} MB/s of CPU time)")
    return rate


def _timed_parse(text: str):
    """(reports, wall seconds, CPU seconds) of one parse: on a shared machine the CPU figure is the steadier."""
    t0, c0 = time.perf_counter(), time.process_time()
    reports = console.parse(text)
    return reports, time.perf_counter() - t0, max(time.process_time() - c0, 1e-9)


HEX_BLOB = "".join(f"{(i * 2654435761) & 0xffffffff:08x}" for i in range(1024))  # 8 KB of hex digits
# Lines that hurt a backtracking regex: name -> line (the report header's caller prefix is added by the caller).
ADVERSARIAL_LINES = {
    "syz hex blob": ("syz_mount_image$ext4(&(0x7f0000000000)='ext4\\x00', &(0x7f0000000100)='./file0\\x00', 0x0,"
                     f" &(0x7f0000000200)=ANY=[@ANYBLOB=\"{HEX_BLOB}\"], 0x1, 0x0)"),
    "bare hex blob": HEX_BLOB,
    "file-name run": "./" + "a/b_c-d.e" * 900 + ".c",
    "dotted run": "a." * 4000 + "c:",
    "at-soup": "at " + "at a.c " * 1200,
    "frame soup": " " + "f+0x1/0x2 [<ffffffff81000000>] " * 250,
    "space run": " " * 8000 + "x",
    "register soup": "RIP: " + "0010:" * 1600,
}
# Report first lines built the same way (timed by slowest_line, not in the bulk log).
ADVERSARIAL_HEADERS = {
    "WARNING at-soup": "WARNING: CPU: 0 PID: 1 at " + "a.b/c " * 1300 + "at " + "x.y" * 2000,
    "WARNING src run": "WARNING: " + "fs/a.b" * 1300 + ":1 at " + "f" * 4000,
    "BUG spaces": "BUG:" + " " * 8000 + "x",
    "KASAN run": "BUG: KASAN: " + "a-b" * 2600 + " in f",
    "INFO hex": "INFO: task " + HEX_BLOB + " blocked for more than 1 seconds",
}


def adversarial_log(mb: int) -> tuple[str, int]:
    """(log, number of reports in it): ~mb MB of interleaved callers, hex blobs and never-ended reports."""
    warn = ("WARNING: CPU: 0 PID: {pid} at fs/ext4/inode.c:3606 ext4_dirty_folio+0x5d/0x70\n"
            "Modules linked in:\nRIP: 0010:ext4_dirty_folio+0x5d/0x70\nCall Trace:\n <TASK>\n"
            " folio_mark_dirty+0xc1/0x140\n unpin_user_pages_dirty_lock+0x404/0x4c0\n")
    shapes = list(ADVERSARIAL_LINES.values())
    parts, size, reports, block = [], 0, 0, 0
    while size < mb * 1_000_000:
        t = 10.0 + block
        lines = []
        # A caller-prefixed report that never ends, drowned in other callers' lines.
        for i, line in enumerate(warn.format(pid=100 + block).splitlines()):
            lines.append(f"[{t + i / 1e4:12.6f}][  T{100 + block}] {line}")
            for j in range(6):
                ctx = f"C{j % 2}" if j % 3 == 0 else f"T{7000 + j}"
                lines.append(f"[{t + i / 1e4:12.6f}][{ctx:>6}] {shapes[(i + j) % len(shapes)]}")
        # A report without prefixes whose lines are hex blobs and file-name runs.
        lines.extend(warn.format(pid=200 + block).splitlines())
        lines.extend(shapes[k % len(shapes)] for k in range(40))
        lines.append("executing program 0:")
        reports += 2
        chunk = "\n".join(lines) + "\n"
        parts.append(chunk)
        size += len(chunk)
        block += 1
    return "".join(parts), reports


def _parse_time(text: str, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        console.parse(text)
        best = min(best, time.perf_counter() - t0)
    return best


def slowest_line() -> tuple[str, float]:
    """The adversarial line shape that adds the most parse time to a report, and that time."""
    base = "WARNING: CPU: 0 PID: 1 at fs/ext4/inode.c:3606 ext4_dirty_folio+0x5d/0x70\nCall Trace:\n f+0x1/0x2\n"
    empty = _parse_time(base)
    costs = {name: _parse_time(base + line + "\n") - empty for name, line in ADVERSARIAL_LINES.items()}
    costs.update((name, _parse_time(line + "\n")) for name, line in ADVERSARIAL_HEADERS.items())
    name = max(costs, key=costs.get)
    return name, costs[name]


def bench_adversarial(mb: int) -> float:
    text, expected = adversarial_log(mb)
    reports, elapsed, cpu = _timed_parse(text)
    assert len(reports) == expected, f"parser found {len(reports)} reports, expected {expected}"
    assert {r.title for r in reports} == {"WARNING in ext4_dirty_folio"}, {r.title for r in reports}
    rate = len(text) / 1e6 / elapsed
    name, cost = slowest_line()
    print(f"adversarial parse: {len(text) / 1e6:.1f} MB, {len(reports)} reports in {elapsed:.2f} s = {rate:.1f} MB/s"
          f" ({len(text) / 1e6 / cpu:.1f} MB/s of CPU time);"
          f" slowest line: {name} ({len({**ADVERSARIAL_LINES, **ADVERSARIAL_HEADERS}[name])} chars) {cost * 1000:.2f} ms"
          f" (goal: >= 20 MB/s, <= 10 ms)")
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
    parser.add_argument("--adversarial-mb", type=int, default=100, help="size of the adversarial log (0: skip)")
    parser.add_argument("--vmlinux", type=Path, default=DEFAULT_VMLINUX)
    parser.add_argument("--modules", type=Path, default=DEFAULT_MODULES)
    parser.add_argument("--decode-script", type=Path, help="linux-source's scripts/decode_stacktrace.sh")
    args = parser.parse_args(argv)
    bench_parse(args.mb)
    if args.adversarial_mb:
        bench_adversarial(args.adversarial_mb)
    if not args.vmlinux.exists():
        print(f"symbolize: skipped, {args.vmlinux} not found (see this file's docstring)")
        return 0
    modules = args.modules if args.modules.is_dir() else None
    return 0 if bench_symbolize(args.vmlinux, modules, args.decode_script) else 1


if __name__ == "__main__":
    sys.exit(main())
