"""The pyelftools symbolizer agrees with binutils' addr2line -i on binaries built here with gcc."""
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.crash import console
from harness.errors import HarnessError
from harness.crash.symbolize import DebugInfo, Symbolizer, clean_path, symbolize

pytestmark = pytest.mark.skipif(not (shutil.which("gcc") and shutil.which("addr2line") and shutil.which("objdump")),
                                reason="needs gcc and binutils")

SAMPLE_C = r"""
volatile int sink;

static inline __attribute__((always_inline)) void mark_dirty(int *p, int v)
{
	if (v & 1)
		*p += v;
	sink = *p;
}

static inline __attribute__((always_inline)) void release_pages(int *p, int n)
{
	for (int i = 0; i < n; i++)
		mark_dirty(p, i);
}

__attribute__((noinline)) void bio_release_pages(int *p, int n)
{
	release_pages(p, n);
	sink++;
}

__attribute__((noinline)) void dio_bio_end_io(int *p, int n)
{
	bio_release_pages(p, n * 2);
	sink--;
}

__attribute__((noinline)) int main(int argc, char **argv)
{
	int x = argc;
	dio_bio_end_io(&x, argc + 3);
	return sink;
}
"""


def run(argv, cwd):
    return subprocess.run(argv, cwd=cwd, check=True, capture_output=True, text=True, timeout=60).stdout


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    d = tmp_path_factory.mktemp("elf")
    (d / "sample.c").write_text(SAMPLE_C)
    run(["gcc", "-g", "-O2", "-fno-pie", "-no-pie", "-o", "sample", "sample.c"], d)
    run(["gcc", "-g", "-O2", "-c", "-o", "sample.o", "sample.c"], d)
    return d


def instructions(binary: Path, functions=("bio_release_pages", "dio_bio_end_io", "main")):
    """{function: [instruction addresses]} from objdump."""
    out, current = {}, None
    for line in run(["objdump", "-d", "--no-show-raw-insn", "-j", ".text", str(binary)], binary.parent).splitlines():
        m = re.match(r"^([0-9a-f]+) <([^>]+)>:$", line)
        if m:
            current = m.group(2) if m.group(2) in functions else None
            continue
        m = re.match(r"^\s+([0-9a-f]+):", line)
        if m and current:
            out.setdefault(current, []).append(int(m.group(1), 16))
    return out


def addr2line(binary: Path, addrs, section=None):
    argv = ["addr2line", "-i", "-f", "-e", str(binary)] + (["-j", section] if section else [])
    out = run(argv + [hex(a) for a in addrs], binary.parent).splitlines()
    # addr2line -i prints func/file:line pairs; which address each pair belongs to is found by
    # asking for one address at a time instead.
    return out


def addr2line_one(binary: Path, addr: int, section=None, comp_dir=""):
    lines = addr2line(binary, [addr], section)
    frames = []
    for func, pos in zip(lines[::2], lines[1::2]):
        path, _, num = pos.split(" ")[0].rpartition(":")
        frames.append((func, clean_path(path, comp_dir), int(num) if num.isdigit() else 0))
    return frames


def ours(info: DebugInfo, addr: int):
    return [(s.function, s.file, s.line) for s in info.source(addr)]


def test_every_instruction_matches_addr2line(built, tmp_path):
    info = DebugInfo(built / "sample", cache_dir=tmp_path)
    checked = 0
    for func, addrs in instructions(built / "sample").items():
        for addr in addrs:
            assert ours(info, addr) == addr2line_one(built / "sample", addr, comp_dir=str(built)), hex(addr)
            checked += 1
    assert checked > 20
    inlined = ours(info, instructions(built / "sample")["bio_release_pages"][6])
    assert [f for f, _, _ in inlined] == ["mark_dirty", "release_pages", "bio_release_pages"]
    info.close()


def test_relocatable_object_like_a_module(built, tmp_path):
    obj = built / "sample.o"
    info = DebugInfo(obj, cache_dir=tmp_path)
    assert info.relocatable
    base = info.section_base(".text")
    for func, addrs in instructions(obj).items():
        for addr in addrs:
            assert ours(info, base + addr) == addr2line_one(obj, addr, ".text", str(built)), (func, hex(addr))
    info.close()


def return_address_frame(binary: Path, caller: str, callee: str):
    """'caller+0xoff/0xsize' where off is the return address of its call to callee, like a stack trace."""
    text = run(["objdump", "-d", "--no-show-raw-insn", str(binary)], binary.parent)
    block = text[text.index(f"<{caller}>:"):]
    block = block[:block.index("\n\n")]
    lines = block.splitlines()[1:]
    for i, line in enumerate(lines):
        if f"<{callee}>" in line and ("call" in line or "jmp" in line):
            ret = int(lines[i + 1].split(":")[0], 16)
            start = int(lines[0].split(":")[0], 16)
            break
    size = int(run(["nm", "-S", str(binary)], binary.parent).split(f" {caller}\n")[0].split("\n")[-1].split()[1], 16)
    return ret - start, size


def test_symbolize_report_like_decode_stacktrace(built, tmp_path):
    binary = built / "sample"
    off, size = return_address_frame(binary, "main", "dio_bio_end_io")
    rip = instructions(binary)["bio_release_pages"][6]
    start = instructions(binary)["bio_release_pages"][0]
    bsize = int(re.search(r"([0-9a-f]+) T bio_release_pages", run(["nm", "-S", str(binary)], built)).group(1), 16)
    report = (f"WARNING: CPU: 0 PID: 1 at sample.c:9 bio_release_pages+0x{rip - start:x}/0x{bsize:x}\n"
              f"RIP: 0010:bio_release_pages+0x{rip - start:x}/0x{bsize:x}\n"
              "Call Trace:\n <TASK>\n"
              f" main+0x{off:x}/0x{size:x}\n"
              " ? unknown_function+0x1/0x2\n </TASK>\n")
    reps = console.parse(report)
    assert reps[0].title == "WARNING in bio_release_pages"
    symbolize(reps, binary, cache_dir=tmp_path)
    text = reps[0].report
    assert "RIP: 0010:mark_dirty sample.c:" in text and "[inline]" in text
    frames = reps[0].frames
    assert [(f.function, f.inlined) for f in frames] == [
        ("mark_dirty", True), ("release_pages", True), ("bio_release_pages", False), ("main", False)]
    expected_main = addr2line_one(binary, start - start + int(run(["nm", str(binary)], built).split(" T main")[0]
                                                              .split("\n")[-1], 16) + off - 1, comp_dir=str(built))
    assert (frames[-1].file, frames[-1].line) == expected_main[-1][1:]
    assert all(f.file == "sample.c" for f in frames)
    assert reps[0].guilty_file == "sample.c"


def test_kaslr_slide_from_kernel_offset_line(built, tmp_path):
    binary = built / "sample"
    info = DebugInfo(binary, cache_dir=tmp_path)
    addr = instructions(binary)["dio_bio_end_io"][2]
    slide = 0x2c000000
    report = ("BUG: unable to handle page fault for address: 0000000000000008\n"
              f"RIP: 0010:0x{addr + slide:x}\nCall Trace:\n <TASK>\n [<{addr + slide + 1:016x}>]\n </TASK>\n"
              f"Kernel Offset: 0x{slide:x} from 0xffffffff81000000 (relocation range: 0xffffffff80000000-0xffffffffbfffffff)\n")
    reps = console.parse(report)
    symbolize(reps, binary, cache_dir=tmp_path)
    frames = reps[0].frames
    assert frames[0].function == "dio_bio_end_io" and frames[0].line == ours(info, addr)[0][2]
    assert "dio_bio_end_io+0x" in reps[0].report
    info.close()


def test_kaslr_slide_from_a_frame_with_address_and_symbol(built, tmp_path):
    binary = built / "sample"
    sym = Symbolizer(binary, cache_dir=tmp_path)
    addr = instructions(binary)["main"][0]
    from harness.crash.symbolize import kaslr_slide
    assert kaslr_slide(f" [<{addr + 0x1000000:x}>] main+0x0/0x10\n", sym) == 0x1000000
    sym.close()


def test_module_frames_are_looked_up_in_the_modules_dir(built, tmp_path):
    mods = tmp_path / "lib" / "modules" / "6.1.0" / "kernel" / "fs" / "sample"
    mods.mkdir(parents=True)
    shutil.copy(built / "sample.o", mods / "sample.ko")
    off = instructions(built / "sample.o")["bio_release_pages"][6]
    size = int(re.search(r"([0-9a-f]+) T bio_release_pages", run(["nm", "-S", "sample.o"], built)).group(1), 16)
    text = f"RIP: 0010:bio_release_pages+0x{off:x}/0x{size:x} [sample]\n"
    out = Symbolizer(built / "sample", tmp_path / "lib", cache_dir=tmp_path)
    from harness.crash.symbolize import symbolize_text
    decoded = symbolize_text(text, out)
    out.close()
    assert decoded.splitlines()[-1].startswith(f"RIP: 0010:bio_release_pages+0x{off:x}/0x{size:x} [sample] sample.c:")
    assert "mark_dirty sample.c" in decoded


def test_a_module_without_dwarf_leaves_its_frames_and_decodes_the_kernel_s(built, tmp_path):
    # Debian's linux-image packages ship .ko files without DWARF: the module frame stays as printed.
    from harness.crash.symbolize import symbolize_text

    mods = tmp_path / "lib"
    mods.mkdir()
    run(["objcopy", "--strip-debug", "--remove-section=.eh_frame", "--remove-section=.rela.eh_frame",
         str(built / "sample.o"), str(mods / "sample.ko")], built)  # kernel modules have no .eh_frame either
    binary = built / "sample"
    size = int(re.search(r"([0-9a-f]+) T main", run(["nm", "-S", str(binary)], built)).group(1), 16)
    text = f"RIP: 0010:bio_release_pages+0x8/0x38 [sample]\nCall Trace:\n main+0x4/0x{size:x}\n"
    sym = Symbolizer(binary, mods, cache_dir=tmp_path)
    decoded = symbolize_text(text, sym).splitlines()
    sym.close()
    assert decoded[0] == "RIP: 0010:bio_release_pages+0x8/0x38 [sample]"
    assert decoded[-1].startswith(f" main+0x4/0x{size:x} sample.c:")


def test_cache_answers_without_reading_dwarf(built, tmp_path, monkeypatch):
    binary = built / "sample"
    addrs = instructions(binary)["bio_release_pages"]
    first = DebugInfo(binary, cache_dir=tmp_path)
    want = [ours(first, a) for a in addrs]
    first.save()
    first.close()
    assert list(tmp_path.glob("*.json")), "no cache written"
    monkeypatch.setattr(DebugInfo, "_dwarf_info", lambda self: pytest.fail("DWARF read despite the cache"))
    again = DebugInfo(binary, cache_dir=tmp_path)
    assert [ours(again, a) for a in addrs] == want
    again.close()


def test_not_an_elf_is_a_harness_error(tmp_path):
    bogus = tmp_path / "vmlinux"
    bogus.write_bytes(b"not an elf at all")
    with pytest.raises(HarnessError, match="not an ELF"):
        DebugInfo(bogus, cache_dir=tmp_path)
    with pytest.raises(HarnessError, match="cannot open"):
        DebugInfo(tmp_path / "missing", cache_dir=tmp_path)


def test_report_cli_with_vmlinux(built, tmp_path, capsys, monkeypatch):
    from harness.cli import parser as cli
    monkeypatch.setenv("PINHARNESS_CACHE", str(tmp_path))
    binary = built / "sample"
    start = instructions(binary)["bio_release_pages"][0]
    rip = instructions(binary)["bio_release_pages"][6]
    log = tmp_path / "console.log"
    log.write_text(f"[    5.1][  T1] WARNING: CPU: 0 PID: 1 at sample.c:9 bio_release_pages+0x{rip - start:x}/0x38\n"
                   f"[    5.1][  T1] RIP: 0010:bio_release_pages+0x{rip - start:x}/0x38\n"
                   "[    5.1][  T1] Call Trace:\n[    5.1][  T1]  <TASK>\n[    5.1][  T1]  </TASK>\n")
    assert cli.main(["report", "--vmlinux", str(binary), str(log)]) == 0
    out = capsys.readouterr().out
    assert "RIP: 0010:mark_dirty sample.c:" in out
    assert cli.main(["report", "--vmlinux", str(tmp_path / "nope"), str(log)]) == 2


# ---------------------------------------------------------------- AArch64 (arm64 guests' vmlinux and modules)

A64 = "aarch64-linux-gnu-"
needs_a64 = pytest.mark.skipif(not all(shutil.which(A64 + t) for t in ("gcc", "addr2line", "objdump", "nm")),
                               reason="needs gcc-aarch64-linux-gnu and its binutils")


@pytest.fixture(scope="module")
def built_a64(tmp_path_factory):
    d = tmp_path_factory.mktemp("elf_a64")
    (d / "sample.c").write_text(SAMPLE_C)
    run([A64 + "gcc", "-g", "-O2", "-fno-pie", "-no-pie", "-o", "sample", "sample.c"], d)
    # ET_DYN like an arm64 vmlinux (CONFIG_RELOCATABLE links it -shared -Bsymbolic)
    run([A64 + "gcc", "-g", "-O2", "-fpie", "-pie", "-o", "sample-pie", "sample.c"], d)
    run([A64 + "gcc", "-g", "-O2", "-c", "-o", "sample.o", "sample.c"], d)  # main lands in .text.startup
    return d


def a64_instructions(binary: Path, section: str) -> dict[str, list[int]]:
    out, current = {}, None
    for line in run([A64 + "objdump", "-d", "--no-show-raw-insn", "-j", section, str(binary)], binary.parent).splitlines():
        m = re.match(r"^([0-9a-f]+) <([^>]+)>:$", line)
        if m:
            current = m.group(2) if m.group(2) in ("bio_release_pages", "dio_bio_end_io", "main") else None
            continue
        m = re.match(r"^\s+([0-9a-f]+):", line)
        if m and current:
            out.setdefault(current, []).append(int(m.group(1), 16))
    return out


def a64_addr2line(binary: Path, addr: int, section=None, comp_dir=""):
    argv = [A64 + "addr2line", "-i", "-f", "-e", str(binary)] + (["-j", section] if section else []) + [hex(addr)]
    lines = run(argv, binary.parent).splitlines()
    frames = []
    for func, pos in zip(lines[::2], lines[1::2]):
        path, _, num = pos.split(" ")[0].rpartition(":")
        frames.append((func, clean_path(path, comp_dir), int(num) if num.isdigit() else 0))
    return frames


def a64_size(binary: Path, func: str) -> int:
    return int(re.search(rf"([0-9a-f]+) [Tt] {func}\n", run([A64 + "nm", "-S", str(binary)], binary.parent)).group(1), 16)


@needs_a64
@pytest.mark.parametrize("name,e_type", [("sample", "ET_EXEC"), ("sample-pie", "ET_DYN")])
def test_aarch64_executable_matches_its_addr2line(built_a64, tmp_path, name, e_type):
    binary = built_a64 / name
    info = DebugInfo(binary, cache_dir=tmp_path)
    assert info._elf["e_machine"] == "EM_AARCH64" and info._elf["e_type"] == e_type and not info.relocatable
    checked = 0
    for func, addrs in a64_instructions(binary, ".text").items():
        for addr in addrs[:a64_size(binary, func) // 4]:  # objdump labels padding after main with main
            assert ours(info, addr) == a64_addr2line(binary, addr, comp_dir=str(built_a64)), (func, hex(addr))
            checked += 1
    assert checked > 20
    chains = [[f for f, _, _ in ours(info, a)] for a in a64_instructions(binary, ".text")["bio_release_pages"]]
    assert ["mark_dirty", "release_pages", "bio_release_pages"] in chains
    info.close()


@needs_a64
def test_aarch64_relocatable_object_like_a_module(built_a64, tmp_path):
    from harness.crash.symbolize import _relocate

    obj = built_a64 / "sample.o"
    info = DebugInfo(obj, cache_dir=tmp_path)
    assert info.relocatable
    # R_AARCH64_ABS64/ABS32 in .debug_info/.debug_line/.debug_aranges/.debug_rnglists: applied by our own code.
    for name in (".debug_info", ".debug_line", ".debug_aranges", ".debug_rnglists"):
        assert _relocate(info._elf, info._elf.get_section_by_name(name)) is not None, name
    checked = 0
    for section in (".text", ".text.startup"):  # each section at its own base, as the module loader places them
        base = info.section_base(section)
        for func, addrs in a64_instructions(obj, section).items():
            for addr in addrs:
                assert ours(info, base + addr) == a64_addr2line(obj, addr, section, str(built_a64)), (func, hex(addr))
                checked += 1
    assert checked > 20 and info.section_base(".text.startup") != info.section_base(".text")
    info.close()


def a64_return_offset(binary: Path, caller: str, callee: str) -> int:
    """Offset in ``caller`` of the return address of its ``bl callee`` (the instruction after it)."""
    text = run([A64 + "objdump", "-d", "--no-show-raw-insn", str(binary)], binary.parent)
    lines = text[text.index(f"<{caller}>:"):].split("\n\n")[0].splitlines()[1:]
    start = int(lines[0].split(":")[0], 16)
    for i, line in enumerate(lines):
        if re.search(rf"\bbl\s+[0-9a-f]+ <{callee}>", line):
            return int(lines[i + 1].split(":")[0], 16) - start
    raise AssertionError(f"{caller} does not call {callee}")


@needs_a64
def test_arm64_report_of_a_module_is_decoded_like_decode_stacktrace(built_a64, tmp_path):
    from harness.crash.symbolize import symbolize_text

    obj = built_a64 / "sample.o"
    mods = tmp_path / "lib" / "modules" / "6.1.0-57-arm64" / "kernel" / "fs" / "sample"
    mods.mkdir(parents=True)
    shutil.copy(obj, mods / "sample.ko")
    pc = a64_instructions(obj, ".text")["bio_release_pages"]
    info = DebugInfo(obj, cache_dir=tmp_path)
    base = info.section_base(".text")
    start = pc[0]
    inlined = next(a for a in pc if len(ours(info, base + a)) == 3) - start  # pc inside mark_dirty (inlined twice)
    size, dsize = a64_size(obj, "bio_release_pages"), a64_size(obj, "dio_bio_end_io")
    ret = a64_return_offset(obj, "dio_bio_end_io", "bio_release_pages")
    frame = f"bio_release_pages+0x{inlined:x}/0x{size:x} [sample]"
    caller = f"dio_bio_end_io+0x{ret:x}/0x{dsize:x} [sample]"
    report = (f"WARNING: CPU: 1 PID: 204 at sample.c:9 {frame}\nModules linked in: sample\n"
              f"pc : {frame}\nlr : {caller}\nsp : ffff80000a1b3b70\nCall trace:\n {frame} (P)\n {caller}\n"
              "---[ end trace 0000000000000000 ]---\n")
    [rep] = console.parse(report)
    assert rep.title == "WARNING in bio_release_pages"
    sym = Symbolizer(built_a64 / "sample", tmp_path / "lib", cache_dir=tmp_path)
    decoded = symbolize_text(rep.report, sym).splitlines()
    sym.close()
    exact = ours(info, base + start + inlined)  # the pc: looked up as is
    returned = ours(info, base + a64_instructions(obj, ".text")["dio_bio_end_io"][0] + ret - 1)
    info.close()
    assert decoded[2] == f"pc : mark_dirty sample.c:{exact[0][2]} [inline]"
    assert decoded[3] == f"pc : release_pages sample.c:{exact[1][2]} [inline]"
    assert decoded[4] == f"pc : {frame} sample.c:{exact[2][2]}"
    assert f"lr : {caller} sample.c:{returned[-1][2]}" in decoded
    assert f" {frame} sample.c:{exact[2][2]} (P)" in decoded  # (P) is the pc too: same position, not pc - 1
    frames = console.report_frames("\n".join(decoded))
    assert [(f.function, f.inlined) for f in frames][:3] == [("mark_dirty", True), ("release_pages", True),
                                                             ("bio_release_pages", False)]
    assert not any(f.function == "dio_bio_end_io" and f.exact for f in frames)


def test_an_out_of_tree_builds_sources_are_named_relative_to_its_source_tree():
    """`make O=...` names sources by absolute path (/src/linux/fs/ext4/inode.c); a report names them as
    the tree does (fs/ext4/inode.c), the way Debian's relative paths already read."""
    from harness.crash.symbolize import source_tree

    dirs = ["/build/o", "/src/linux-7.2/include/linux", "/src/linux-7.2/arch/arm64/include/asm",
            "/src/linux-7.2/fs/ext4"]
    assert source_tree(dirs) == "/src/linux-7.2"
    assert clean_path("/src/linux-7.2/fs/ext4/inode.c", "/build/o", "/src/linux-7.2") == "fs/ext4/inode.c"
    assert clean_path("/build/o/include/generated/x.h", "/build/o", "/src/linux-7.2") == "include/generated/x.h"
    assert source_tree(["./include/linux", "include/linux", "arch/x86/include/asm"]) == ""  # Debian: relative
    assert clean_path("./fs/ext4/inode.c", "/build/debian", "") == "fs/ext4/inode.c"
