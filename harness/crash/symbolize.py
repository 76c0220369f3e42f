"""DWARF symbolization of crash reports (scripts/decode_stacktrace.sh, in Python).

``symbolize(reports, vmlinux, modules_dir)`` turns every ``func+0xoff/0xlen``
frame (and raw ``[<address>]`` frame) of the reports into file:line, adding
the inlined frames the way ``addr2line -i`` and syzbot show them::

    unpin_user_pages_dirty_lock mm/gup.c:299 [inline]
    unpin_user_pages_dirty_lock+0x404/0x4c0 mm/gup.c:263

Designed for Debian's full debug vmlinux (hundreds of MB of DWARF): the ELF is
mmapped, nothing is copied or relocated; an address goes through
.debug_aranges to its compile unit, and only that unit's line program and DIE
tree are read.  The symbol table, the aranges index and every resolved address
are cached on disk per build-id ($PINHARNESS_CACHE/symbolize, default
~/.cache/pinharness/symbolize).  KASLR: the slide comes from a ``Kernel
Offset:`` line or from a frame printed with both address and symbol.  Module
frames (``[ext4]``) are looked up in ``modules_dir`` (``ext4.ko``,
``ext4.ko.debug``...).
"""
from __future__ import annotations

import bisect
import hashlib
import io
import json
import mmap
import os
import re
import struct
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator, Optional, Sequence

from elftools.common.exceptions import ELFError
from elftools.dwarf.dwarfinfo import DebugSectionDescriptor
from elftools.elf.elffile import ELFFile

from harness.crash import console
from harness.crash.console import CrashReport, Frame
from harness.errors import HarnessError

CACHE_VERSION = 2  # 2: an O= build's absolute source paths made relative to its source tree


@dataclass(frozen=True)
class Source:
    """One source position of an address; ``inlined`` unless it is the real function."""

    function: str
    file: str
    line: int
    inlined: bool


def cache_root() -> Path:
    base = os.environ.get("PINHARNESS_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "pinharness") / "symbolize"


# ---------------------------------------------------------------- ELF access


class _Window:
    """A read-only file view of one section of an mmapped ELF (no copy)."""

    def __init__(self, mm: mmap.mmap, base: int, size: int):
        self._mm, self._base, self._size, self._pos = mm, base, size, 0

    def seek(self, offset: int, whence: int = 0) -> int:
        self._pos = offset if whence == 0 else self._pos + offset if whence == 1 else self._size + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, n: int = -1) -> bytes:
        end = self._size if n is None or n < 0 else min(self._size, self._pos + n)
        data = self._mm[self._base + self._pos:self._base + end] if end > self._pos else b""
        self._pos += len(data)
        return data


# Absolute relocations found in the DWARF of x86-64 and arm64 modules: type -> width in bytes.
_ABS_RELOCS = {"EM_X86_64": {1: 8, 10: 4, 11: 4}, "EM_AARCH64": {257: 8, 258: 4}}


class _MappedELF(ELFFile):
    """ELFFile whose DWARF sections of linked images are windows on the mmap.

    Relocatable files (.ko/.o) get their DWARF relocated with each allocated
    section placed at its own base (``section_bases``), as a module loader
    would, so that .text, .text.unlikely and .init.text do not all start at 0.
    """

    def __init__(self, stream, mm: mmap.mmap):
        super().__init__(stream)
        self._mm = mm
        self.section_bases: dict[int, int] = {}
        if self["e_type"] == "ET_REL":
            base = 0
            for i, sect in enumerate(self.iter_sections()):
                if sect["sh_flags"] & 0x2:  # SHF_ALLOC
                    align = max(sect["sh_addralign"], 1)
                    base = (base + align - 1) // align * align
                    self.section_bases[i] = base
                    base += sect["sh_size"]

    def _read_dwarf_section(self, section, relocate_dwarf_sections):
        if self["e_type"] == "ET_REL":
            return self._relocated(section) or super()._read_dwarf_section(section, relocate_dwarf_sections)
        if section["sh_flags"] & 0x800 or section["sh_type"] == "SHT_NOBITS":  # compressed: let pyelftools
            return super()._read_dwarf_section(section, relocate_dwarf_sections)
        return DebugSectionDescriptor(
            stream=_Window(self._mm, section["sh_offset"], section["sh_size"]), name=section.name,
            global_offset=section["sh_offset"], size=section["sh_size"], address=section["sh_addr"])

    def _relocated(self, section):
        data = _relocate(self, section)
        if data is None:
            return None
        return DebugSectionDescriptor(stream=io.BytesIO(data), name=section.name, global_offset=section["sh_offset"],
                                      size=len(data), address=section["sh_addr"])


def _iter_syms(data: bytes, elfclass: int, little: bool):
    """(name offset, type, section index, value, size) of each ELF symbol, read with struct."""
    order = "<" if little else ">"
    if elfclass == 64:
        for name, info, _, shndx, value, size in struct.iter_unpack(order + "IBBHQQ", data):
            yield name, info & 0xF, shndx, value, size
    else:
        for name, value, size, info, _, shndx in struct.iter_unpack(order + "IIIBBH", data):
            yield name, info & 0xF, shndx, value, size


def _relocate(elf: "_MappedELF", section) -> Optional[bytes]:
    """Section data with its RELA relocations applied (S + A, sections at their bases), read with struct."""
    widths = _ABS_RELOCS.get(elf["e_machine"])
    if widths is None or elf.elfclass != 64:
        return None
    order = "<" if elf.little_endian else ">"
    data = bytearray(section.data())
    index = elf.get_section_index(section.name)
    for rel in elf.iter_sections():
        if rel["sh_type"] != "SHT_RELA" or rel["sh_info"] != index:
            continue
        symtab = elf.get_section(rel["sh_link"])
        values = [value + elf.section_bases.get(shndx, 0) if 0 < shndx < 0xff00 else value
                  for _, _, shndx, value, _ in _iter_syms(symtab.data(), 64, elf.little_endian)]
        for off, info, addend in struct.iter_unpack(order + "QQq", rel.data()):
            kind = info & 0xFFFFFFFF
            width = widths.get(kind)
            if width is None:
                if kind == 0:
                    continue
                return None
            value = (values[info >> 32] + addend) & ((1 << (8 * width)) - 1)
            data[off:off + width] = value.to_bytes(width, "little" if elf.little_endian else "big")
    return bytes(data)


def _attr(die, name):
    attr = die.attributes.get(name)
    return None if attr is None else attr.value


# ---------------------------------------------------------------- one ELF with DWARF


class DebugInfo:
    """Symbols and DWARF of one ELF (vmlinux or a module), read lazily, cached per build-id."""

    def __init__(self, path: Path, cache_dir: Optional[Path] = None):
        self.path = Path(path)
        try:
            self._file = open(self.path, "rb")
        except OSError as exc:
            raise HarnessError(f"cannot open {self.path} ({exc.strerror}): give a vmlinux/.ko with DWARF") from None
        try:
            self._mm = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
            self._elf = _MappedELF(self._file, self._mm)
        except (ELFError, ValueError, OSError):
            self.close()
            raise HarnessError(f"{self.path} is not an ELF file: give the vmlinux (or .ko) with debug info") from None
        self.relocatable = self._elf["e_type"] == "ET_REL"
        self.build_id = self._build_id()
        self._cache_path = (cache_dir or cache_root()) / f"{self.build_id}.json"
        self._cache = self._load_cache()
        self._dirty = False
        self._dwarf = None
        self._by_addr: Optional[list[tuple[int, int, str]]] = None
        self._cus: dict[int, "_Unit"] = {}

    def close(self) -> None:
        for closer in (getattr(self, "_mm", None), self._file if hasattr(self, "_file") else None):
            if closer is not None:
                closer.close()

    # -- identity and cache

    def _build_id(self) -> str:
        for sect in self._elf.iter_sections():
            if sect["sh_type"] != "SHT_NOTE":
                continue
            for note in sect.iter_notes():
                if note["n_type"] == "NT_GNU_BUILD_ID" and note["n_name"] == "GNU":
                    return str(note["n_desc"])
        st = self.path.stat()
        return hashlib.sha1(f"{self.path.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()

    def _load_cache(self) -> dict:
        try:
            data = json.loads(self._cache_path.read_text())
            if data.get("version") == CACHE_VERSION:
                return data
        except (OSError, ValueError):
            pass
        return {"version": CACHE_VERSION}

    def save(self) -> None:
        if not self._dirty:
            return
        try:
            self._cache_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self._cache_path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(self._cache))
            os.replace(tmp, self._cache_path)
            self._dirty = False
        except OSError:
            pass  # a cache that cannot be written only costs time

    def _cached(self, key: str, compute):
        if key not in self._cache:
            self._cache[key] = compute()
            self._dirty = True
        return self._cache[key]

    # -- symbols

    def _symbols(self) -> dict[str, list[list[int]]]:
        return self._cached("symbols", self._read_symbols)

    def _read_symbols(self) -> dict[str, list[list[int]]]:
        table = self._elf.get_section_by_name(".symtab")
        if table is None:
            raise HarnessError(f"{self.path} has no symbol table: give an unstripped vmlinux/.ko")
        strtab = self._elf.get_section(table["sh_link"])
        names = self._mm[strtab["sh_offset"]:strtab["sh_offset"] + strtab["sh_size"]]
        data = self._mm[table["sh_offset"]:table["sh_offset"] + table["sh_size"]]
        out: dict[str, list[list[int]]] = {}
        for name_off, kind, shndx, value, size in _iter_syms(data, self._elf.elfclass, self._elf.little_endian):
            # functions (and untyped text labels) in a real section
            if kind in (0, 2) and 0 < shndx < 0xff00 and name_off:
                end = names.find(b"\0", name_off)
                value += self._elf.section_bases.get(shndx, 0)
                out.setdefault(names[name_off:end].decode(errors="replace"), []).append([value, size])
        return out

    def symbol_address(self, name: str, size: Optional[int] = None) -> Optional[int]:
        found = self._symbols().get(name)
        if not found:
            return None
        for addr, sym_size in found:
            if size is None or sym_size == size:
                return addr
        return found[0][0]

    def symbol_at(self, addr: int, nearest: bool = False) -> Optional[tuple[str, int, int]]:
        """(name, offset, size) of the function containing a link-time address
        (with ``nearest``: of the closest function before it, as addr2line names padding)."""
        if self._by_addr is None:
            self._by_addr = sorted((a, s, n) for n, lst in self._symbols().items() for a, s in lst if s)
        i = bisect.bisect_right(self._by_addr, (addr, float("inf"), "")) - 1
        if i >= 0:
            start, size, name = self._by_addr[i]
            if start <= addr < start + size or nearest:
                return name, addr - start, size
        return None

    # -- DWARF

    @property
    def has_dwarf(self) -> bool:
        """Whether there is debug info to read (pyelftools also says so for a lone .eh_frame)."""
        return any(self._elf.get_section_by_name(name) is not None for name in (".debug_info", ".zdebug_info"))

    def _dwarf_info(self):
        if self._dwarf is None:
            if not self._elf.has_dwarf_info():
                raise HarnessError(f"{self.path} has no DWARF: use the -dbg package's vmlinux or a CONFIG_DEBUG_INFO build")
            self._dwarf = self._elf.get_dwarf_info(relocate_dwarf_sections=self.relocatable, follow_links=False)
        return self._dwarf

    def section_base(self, name: str) -> int:
        """Where a section of a relocatable file was placed (0 in linked images)."""
        return self._elf.section_bases.get(self._elf.get_section_index(name), 0)

    def _aranges(self) -> list[list[int]]:
        def compute():
            dwarf = self._dwarf_info()
            rows = []
            aranges = dwarf.get_aranges()
            if aranges is not None:
                rows = [[e.begin_addr, e.begin_addr + e.length, e.info_offset] for e in aranges.entries if e.length]
            if not rows:  # no .debug_aranges: the ranges of each unit's top DIE
                for cu in dwarf.iter_CUs():
                    unit = _Unit(dwarf, cu)
                    rows.extend([lo, hi, cu.cu_offset] for lo, hi in unit.ranges(cu.get_top_DIE()))
            rows.sort()
            return rows
        return self._cached("aranges", compute)

    def _unit_for(self, addr: int) -> Optional["_Unit"]:
        rows = self._aranges()
        i = bisect.bisect_right(rows, [addr, float("inf"), 0]) - 1
        while i >= 0 and rows[i][0] <= addr:
            lo, hi, off = rows[i]
            if addr < hi:
                unit = self._cus.get(off)
                if unit is None:
                    dwarf = self._dwarf_info()
                    unit = self._cus[off] = _Unit(dwarf, dwarf.get_CU_at(off))
                return unit
            i -= 1
            if rows[i + 1][0] - rows[i][0] > 1 << 24:
                break
        return None

    def source(self, addr: int) -> list[Source]:
        """Source positions of a link-time address, innermost inlined frame first."""
        resolved = self._cache.setdefault("resolved", {})
        key = str(addr)
        if key not in resolved:
            unit = self._unit_for(addr)
            sources = [] if unit is None else unit.source(addr)
            if sources and sources[-1].function == "??":
                found = self.symbol_at(addr, nearest=True)
                if found is not None:
                    sources[-1] = replace(sources[-1], function=found[0])
            resolved[key] = [[s.function, s.file, s.line, s.inlined] for s in sources]
            self._dirty = True
        return [Source(f, p, n, i) for f, p, n, i in resolved[key]]


class _Unit:
    """One compile unit: its line table and its functions, parsed on first use."""

    def __init__(self, dwarf, cu):
        self.dwarf, self.cu = dwarf, cu
        self.top = cu.get_top_DIE()
        self.comp_dir = (_attr(self.top, "DW_AT_comp_dir") or b"").decode(errors="replace")
        self._lines: Optional[tuple[list[int], list[tuple[int, int, int]]]] = None
        self._funcs: Optional[list[tuple[int, int, object]]] = None
        self._program = None
        self._srctree: Optional[str] = None

    # -- names and files

    def program(self):
        if self._program is None:
            self._program = self.dwarf.line_program_for_CU(self.cu)
        return self._program

    def file_name(self, index: int) -> str:
        prog = self.program()
        version = prog.header["version"]
        files = prog.header["file_entry"]
        dirs = prog.header["include_directory"]
        i = index if version >= 5 else index - 1
        if not 0 <= i < len(files):
            return "??"
        entry = files[i]
        name = entry.name.decode(errors="replace")
        d = entry.dir_index if version >= 5 else entry.dir_index - 1
        directory = self.comp_dir if d < 0 else dirs[d].decode(errors="replace") if d < len(dirs) else ""
        path = name if name.startswith("/") else os.path.join(directory, name)
        if self._srctree is None:
            self._srctree = source_tree([d.decode(errors="replace") for d in dirs])
        return clean_path(path, self.comp_dir, self._srctree)

    def ranges(self, die) -> list[tuple[int, int]]:
        lo = _attr(die, "DW_AT_low_pc")
        hi_attr = die.attributes.get("DW_AT_high_pc")
        if lo is not None and hi_attr is not None:
            hi = hi_attr.value if hi_attr.form == "DW_FORM_addr" else lo + hi_attr.value
            return [(lo, hi)]
        ranges = die.attributes.get("DW_AT_ranges")
        if ranges is None:
            return []
        lists = self.dwarf.range_lists()
        if lists is None:
            return []
        base = _attr(self.top, "DW_AT_low_pc") or 0
        out = []
        try:
            entries = lists.get_range_list_at_offset(ranges.value, cu=self.cu)
        except Exception:  # malformed or unsupported encodings: no ranges, not a crash
            return []
        for entry in entries:
            if hasattr(entry, "base_address"):
                base = entry.base_address
            elif entry.begin_offset != entry.end_offset:
                delta = 0 if getattr(entry, "is_absolute", False) else base
                out.append((entry.begin_offset + delta, entry.end_offset + delta))
        return out

    def name(self, die) -> str:
        for _ in range(8):
            name = _attr(die, "DW_AT_name")
            if name is not None:
                return name.decode(errors="replace")
            ref = next((a for a in ("DW_AT_abstract_origin", "DW_AT_specification") if a in die.attributes), None)
            if ref is None:
                break
            die = die.get_DIE_from_attribute(ref)
        return "??"

    # -- address lookups

    def _line_rows(self) -> tuple[list[int], list[tuple[int, int, int]]]:
        if self._lines is None:
            spans: list[tuple[int, int, int, int]] = []
            prev = None
            for entry in self.program().get_entries():
                state = entry.state
                if state is None:
                    continue
                if prev is not None and state.address > prev.address:
                    spans.append((prev.address, state.address, prev.file, prev.line))
                prev = None if state.end_sequence else state
            spans.sort()
            self._lines = ([s[0] for s in spans], [(s[1], s[2], s[3]) for s in spans])
        return self._lines

    def line_at(self, addr: int) -> Optional[tuple[str, int]]:
        starts, rows = self._line_rows()
        i = bisect.bisect_right(starts, addr) - 1
        if i >= 0 and addr < rows[i][0]:
            return self.file_name(rows[i][1]), rows[i][2]
        return None

    def _functions(self) -> list[tuple[int, int, object]]:
        if self._funcs is None:
            funcs = []
            for die in self.top.iter_children():
                if die.tag == "DW_TAG_subprogram":
                    funcs.extend((lo, hi, die) for lo, hi in self.ranges(die))
            funcs.sort(key=lambda f: f[0])
            self._funcs = funcs
        return self._funcs

    def _inline_chain(self, die, addr: int) -> list:
        """inlined_subroutine DIEs containing addr, outermost first."""
        chain = []
        pending = [die]
        while pending:
            parent = pending.pop()
            for child in parent.iter_children():
                if child.tag not in ("DW_TAG_inlined_subroutine", "DW_TAG_lexical_block"):
                    continue
                if any(lo <= addr < hi for lo, hi in self.ranges(child)):
                    if child.tag == "DW_TAG_inlined_subroutine":
                        chain.append(child)
                    pending = [child]
                    break
        return chain

    def source(self, addr: int) -> list[Source]:
        position = self.line_at(addr)
        funcs = self._functions()
        i = bisect.bisect_right([f[0] for f in funcs], addr) - 1
        func = None
        while i >= 0:
            lo, hi, die = funcs[i]
            if lo <= addr < hi:
                func = die
                break
            i -= 1
            if i >= 0 and funcs[i][0] + (1 << 20) < addr:
                break
        if func is None:
            return [] if position is None else [Source("??", position[0], position[1], False)]
        chain = self._inline_chain(func, addr)
        names = [self.name(func)] + [self.name(d) for d in chain]
        file, line = position if position is not None else ("??", 0)
        out = []
        for depth in range(len(chain), -1, -1):  # innermost first
            out.append(Source(names[depth], file, line, depth > 0))
            if depth:
                call = chain[depth - 1]
                file = self.file_name(_attr(call, "DW_AT_call_file") or 0)
                line = _attr(call, "DW_AT_call_line") or 0
        return out


def clean_path(path: str, comp_dir: str = "", srctree: str = "") -> str:
    """A source path as the kernel tree names it: relative to the build dir or, in an O= build whose
    sources are named by absolute path, to the source tree; no './'."""
    path = os.path.normpath(path)
    for prefix in (comp_dir.rstrip("/") + "/" if comp_dir else None, srctree.rstrip("/") + "/" if srctree else None):
        if prefix and path.startswith(prefix):
            path = path[len(prefix):]
    return path[2:] if path.startswith("./") else path


_KERNEL_INCLUDE = re.compile(r"^(/.+?)/include/(?:linux|uapi|asm-generic)(?:/|$)")


def source_tree(include_dirs: Sequence[str]) -> str:
    """The absolute source tree of a compile unit built out of tree (``make O=``), read off its line
    table's include directories (``/src/linux/include/linux`` -> ``/src/linux``); "" when its
    sources are named relative to the build directory, as in an in-tree or Debian build."""
    for d in include_dirs:
        m = _KERNEL_INCLUDE.match(d)
        if m:
            return m.group(1)
    return ""


# ---------------------------------------------------------------- reports


class Symbolizer:
    """Resolves frames against a vmlinux and the modules found under a directory."""

    def __init__(self, vmlinux: Path, modules_dir: Optional[Path] = None, cache_dir: Optional[Path] = None):
        self.kernel = DebugInfo(Path(vmlinux), cache_dir)
        self.modules_dir = Path(modules_dir) if modules_dir else None
        if self.modules_dir is not None and not self.modules_dir.is_dir():
            raise HarnessError(f"{self.modules_dir} is not a directory: give the directory holding the .ko files")
        self.cache_dir = cache_dir
        self._modules: dict[str, Optional[DebugInfo]] = {}

    def close(self) -> None:
        for info in [self.kernel, *self._modules.values()]:
            if info is not None:
                info.save()
                info.close()

    def module(self, name: str) -> Optional[DebugInfo]:
        """The first of the module's files with DWARF (a package's plain .ko has none: its frames stay as
        printed, and the kernel's frames are still decoded)."""
        if name not in self._modules:
            self._modules[name] = None
            for path in self._module_files(name):
                try:
                    info = DebugInfo(path, self.cache_dir)
                except HarnessError:
                    continue
                if info.has_dwarf:
                    self._modules[name] = info
                    break
                info.close()
        return self._modules[name]

    def _module_files(self, name: str) -> Iterator[Path]:
        if self.modules_dir is None:
            return
        wanted = {name.replace("-", "_")}
        for root, _, files in os.walk(self.modules_dir):
            for f in sorted(files):
                stem = f.split(".ko", 1)[0] if ".ko" in f else None
                if stem is not None and stem.replace("-", "_") in wanted and not f.endswith((".xz", ".zst", ".gz")):
                    yield Path(root) / f

    def frame_sources(self, frame: Frame, slide: int) -> tuple[Optional[Frame], list[Source]]:
        """(frame with function/offset filled in, its source positions innermost first)."""
        info = self.kernel if frame.module is None else self.module(frame.module)
        if info is None:
            return None, []
        if frame.function:
            base = info.symbol_address(frame.function, frame.size)
            if base is None or frame.offset is None:
                return None, []
            addr = base + frame.offset
        elif frame.address is not None and frame.module is None:
            addr = frame.address - slide
            found = info.symbol_at(addr)
            if found is None:
                return None, []
            frame = replace(frame, function=found[0], offset=found[1], size=found[2])
        else:
            return None, []
        return frame, info.source(addr if frame.exact else addr - 1)


_KERNEL_OFFSET = re.compile(r"Kernel Offset: 0x([0-9a-f]+) from 0x([0-9a-f]+)")


def kaslr_slide(report: str, sym: Symbolizer) -> int:
    """How far the running kernel was moved from its link address (0 when unknown)."""
    m = _KERNEL_OFFSET.search(report)
    if m:
        return int(m.group(1), 16)
    for line in report.split("\n"):
        frame = console.parse_frame_line(line)
        if frame and frame.function and frame.address is not None and frame.module is None and frame.offset is not None:
            base = sym.kernel.symbol_address(frame.function, frame.size)
            if base is not None:
                return frame.address - (base + frame.offset)
    return 0


# arm64's register dump names the link register as a frame: "lr : func+0x1c/0x40 [mod]" (a return address).
_LR_LINE = re.compile(r"^\s*lr\s*:\s*")


def _frame_of(line: str) -> Optional[Frame]:
    """The frame a report line shows, the arm64 lr line's included (not one of the report's frames)."""
    lr = _LR_LINE.match(line)
    return console.parse_frame_line(line[lr.end():] if lr else line)


def symbolize_text(report: str, sym: Symbolizer) -> str:
    """The report with file:line after each frame and inlined frames above it."""
    slide = kaslr_slide(report, sym)
    out = []
    for line in report.split("\n"):
        frame = _frame_of(line)
        if frame is None or frame.file is not None or frame.inlined:
            out.append(line)
            continue
        filled, sources = sym.frame_sources(frame, slide)
        if not sources:
            out.append(line)
            continue
        out.extend(_decorate(line, filled, sources))
    return "\n".join(out)


# "func+0x1/0x2 [mod]"; the symbol starts at the first letter of its run of name characters
# (searched once per run, not from each of its characters: linear).
_SYMBOL = re.compile(r"(?<![A-Za-z0-9_.$])[0-9.$]*+(?P<sym>[A-Za-z_][A-Za-z0-9_.$]*+)\+0x[0-9a-f]+/0x[0-9a-f]+"
                     r"(?:\s+\[[A-Za-z0-9_\-]+(?:\s+[0-9a-f]+)?\])?")
_BARE_ADDRESS = re.compile(r"\[<[0-9a-f]+>\]|0x[0-9a-f]{8,}")


def _decorate(line: str, frame: Frame, sources: list[Source]) -> list[str]:
    m = _SYMBOL.search(line)
    if m is None:  # a bare address: name it
        m = _BARE_ADDRESS.search(line)
        head, tail = line[:m.end()], line[m.end():]
        head += f" {frame.function}+0x{frame.offset:x}/0x{frame.size:x}"
        start = m.end() + 1
    else:
        head, tail, start = line[:m.end()], line[m.end():], m.start("sym")
    lines = [f"{line[:start]}{s.function} {s.file}:{s.line} [inline]" for s in sources if s.inlined]
    real = [s for s in sources if not s.inlined]
    if real:
        lines.append(f"{head} {real[-1].file}:{real[-1].line}{tail}")
    else:
        lines.append(line)
    return lines


def symbolize(reports: list[CrashReport], vmlinux: Path, modules_dir: Optional[Path] = None,
              cache_dir: Optional[Path] = None) -> None:
    """Decode the stacks of ``reports`` in place (report text, frames, guilty file)."""
    sym = Symbolizer(vmlinux, modules_dir, cache_dir)
    try:
        for rep in reports:
            rep.report = symbolize_text(rep.report, sym)
            rep.frames = console.report_frames(rep.report)
            rep.guilty_file = console.guilty_file(rep.report, rep.title) or rep.guilty_file
    finally:
        sym.close()
