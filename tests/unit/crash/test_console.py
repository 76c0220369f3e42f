"""console.parse on variations of real reports: prefixes, interleaving, truncation, kinds."""
from pathlib import Path

import pytest

from harness.crash import console
from harness.crash import oopses
from harness.crash.console import dedup, parse, parse_bytes, split_prefix

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "console"


def golden(name: str) -> str:
    return (GOLDEN / f"{name}.log").read_text()


WARN = golden("syzbot-warning-ext4_dirty_folio")
BUG = golden("syzbot-kernel-bug-ext4_do_writepages")
MODULE_WARN = golden("bugzilla-205417-warning-ext4_set_page_dirty-module")


def stamped(text: str, fmt: str) -> str:
    return "".join(fmt.format(t=12.0 + i / 1000, i=i) + line + "\n" for i, line in enumerate(text.splitlines()))


@pytest.mark.parametrize("fmt", [
    "[{t:12.6f}] ",                                   # printk.time=1
    "[{t:12.6f}][  T123] ",                           # CONFIG_PRINTK_CALLER
    "[  T123] ",                                      # caller, no timestamps
    "<4>[{t:12.6f}] ",                                # dmesg -r
    "Nov 21 18:32:{i:02d} guest kernel: [{t:12.6f}] ",  # syslog
    "2026-11-21T18:32:27.{i:06d}+00:00 guest kernel: ",  # journal short-iso
    "[Sat Nov 21 18:32:27 2026] ",                    # dmesg -T
])
def test_prefixes_do_not_change_the_result(fmt):
    plain = parse(WARN)[0]
    got = parse(stamped(WARN, fmt.replace("{i:02d}", "{i:02d}" if "{i:02d}" in fmt else "")))
    assert [r.title for r in got] == ["WARNING in ext4_dirty_folio"]
    assert [f.function for f in got[0].frames] == [f.function for f in plain.frames]
    assert got[0].report == plain.report
    assert got[0].corrupted is False


def test_crlf_line_endings():
    got = parse(WARN.replace("\n", "\r\n"))
    assert [r.title for r in got] == ["WARNING in ext4_dirty_folio"]
    assert "\r" not in got[0].report


def test_split_prefix():
    assert split_prefix("[   12.345678][ T4321]  folio_mark_dirty+0xc1/0x140") == ("T4321", " folio_mark_dirty+0xc1/0x140")
    assert split_prefix("[   12.345678][    C1] NMI backtrace") == ("C1", "NMI backtrace")
    assert split_prefix(" <TASK>") == ("", " <TASK>")


def test_printk_caller_keeps_each_task_to_its_own_report():
    a = WARN.splitlines()
    b = BUG.splitlines()
    lines = []
    for i in range(max(len(a), len(b))):
        if i < len(a):
            lines.append(f"[{10 + i / 100:12.6f}][  T100] {a[i]}")
        lines.append(f"[{10 + i / 100:12.6f}][  T200] fio: job 3 wrote {i} blocks")
        if i < len(b):
            lines.append(f"[{10 + i / 100:12.6f}][  T300] {b[i]}")
    got = parse("\n".join(lines) + "\n")
    assert [r.title for r in got] == ["WARNING in ext4_dirty_folio", "kernel BUG in ext4_do_writepages"]
    assert "fio:" not in got[0].report and "fio:" not in got[1].report
    assert "ext4_writepages+0x1e0" not in got[0].report
    assert got[0].report == parse(WARN)[0].report


def test_user_output_interleaved_without_prefixes():
    noisy = []
    for i, line in enumerate(WARN.splitlines()):
        noisy.append(line)
        if i % 3 == 0:
            noisy.append(f"pin-workload: iteration {i} ok")
    got = parse("\n".join(noisy))
    assert [r.title for r in got] == ["WARNING in ext4_dirty_folio"]
    assert not got[0].corrupted


def test_header_glued_to_user_output_on_one_line():
    got = parse("fio: starting job" + WARN)
    assert [r.title for r in got] == ["WARNING in ext4_dirty_folio"]


def test_module_frames_and_questionable_frames():
    rep = parse(MODULE_WARN)[0]
    assert rep.frames[0].function == "ext4_set_page_dirty" and rep.frames[0].module == "ext4"
    assert rep.frames[0].exact is True
    assert all(f.function != "page_referenced_one" for f in rep.frames)  # " ? " frames are unreliable
    assert rep.frames[1].module == "i915" and rep.frames[1].exact is False


@pytest.mark.parametrize("cut_after, reason", [
    ("Call Trace:", "call trace is missed"),
    ("RSP: 0018", "no stack trace in report"),
])
def test_truncated_reports_are_corrupted(cut_after, reason):
    text = WARN[:WARN.index(cut_after) + len(cut_after)]
    rep = parse(text)[0]
    assert rep.corrupted and rep.corrupted_reason == reason
    assert rep.title == "WARNING in ext4_dirty_folio"


def test_header_only_warning_is_corrupted_syzbot_style():
    rep = parse("WARNING: CPU: 0 PID: 1 at fs/ext4/inode.c:3606\n")[0]
    assert rep.corrupted
    assert rep.title == "WARNING: CPU: NUM PID: NUM at fs/ext4/inode.c:LINE"


def test_bare_warning_is_corrupted():
    rep = parse("WARNING:\n")[0]
    assert (rep.title, rep.corrupted, rep.corrupted_reason) == (
        "WARNING: corrupted", True, "report format is marked as corrupted")


def test_timestamp_merged_into_title_is_corrupted():
    text = WARN.replace("ext4_dirty_folio+0xf4/0x120 fs/ext4/inode.c:3600\nModules",
                        "ext4_dirty_fo[   12.345678] lio+0xf4/0x120\nModules", 1)
    rep = parse(text)[0]
    assert rep.corrupted


def test_new_one_line_warning_formats():
    # Linux 6.19 prints "WARNING: file:line at func+off/size, CPU#n: comm/pid" (and "at 0x0" without symbol).
    new = WARN.replace("WARNING: CPU: 1 PID: 7386 at fs/ext4/inode.c:3600 ext4_dirty_folio+0xf4/0x120 fs/ext4/inode.c:3600",
                       "WARNING: fs/ext4/inode.c:3600 at ext4_dirty_folio+0xf4/0x120, CPU#1: syz-executor.1/7386")
    assert parse(new)[0].title == "WARNING in ext4_dirty_folio"
    bare = new.replace("at ext4_dirty_folio+0xf4/0x120, CPU#1", "at 0x0, CPU#1")
    rep = parse(bare)[0]
    assert rep.title == "WARNING in ext4_dirty_folio"  # the RIP line names it
    assert rep.guilty_file == "fs/ext4/inode.c"


def test_panic_on_warn_panic_is_part_of_the_warning():
    text = MODULE_WARN + (
        "[ 3651.933800] Kernel panic - not syncing: kernel: panic_on_warn set ...\n"
        "[ 3651.933900] Kernel Offset: 0x2c000000 from 0xffffffff81000000\n"
        "[ 3651.934000] ---[ end Kernel panic - not syncing: kernel: panic_on_warn set ... ]---\n")
    got = parse(text)
    assert [r.title for r in got] == ["WARNING in ext4_set_page_dirty"]
    assert "end Kernel panic" in got[0].report
    assert got[0].end == len(text) - 1


def test_invalid_opcode_after_kernel_bug_is_not_a_second_report():
    assert [r.title for r in parse(BUG)] == ["kernel BUG in ext4_do_writepages"]


def test_lone_fatal_exception_panic_is_corrupted():
    rep = parse("Kernel panic - not syncing: Fatal exception\n")[0]
    assert (rep.title, rep.corrupted, rep.type) == ("kernel panic: Fatal exception", True, "PANIC")


def test_sysrq_panic():
    text = ("sysrq: Trigger a crash\n"
            "Kernel panic - not syncing: sysrq triggered crash\n"
            "CPU: 0 PID: 321 Comm: sh Not tainted 6.1.0-26-amd64 #1  Debian 6.1.112-1\n"
            "Call Trace:\n <TASK>\n dump_stack_lvl+0x44/0x5c\n panic+0x118/0x2ed\n"
            " sysrq_handle_crash+0x16/0x20\n __handle_sysrq.cold+0x43/0x11b\n"
            " write_sysrq_trigger+0x24/0x40\n </TASK>\n")
    rep = parse(text)[0]
    assert (rep.title, rep.type, rep.corrupted) == ("kernel panic: sysrq triggered crash", "PANIC", False)


# File-system lines below are built from the kernel's format strings
# (__ext4_warning_inode, __ext4_error_inode, xfs_corruption_error, assfail, buffer_io_error).
FS_LINES = [
    ("EXT4-fs warning (device vdc): mpage_prepare_extent_to_map:2620: inode #12: comm kworker/u4:1: "
     "page 3 does not have buffers attached",
     "EXT4-fs warning in mpage_prepare_extent_to_map: page does not have buffers attached", "FS-ERROR"),
    ("EXT4-fs error (device vdc): ext4_find_extent:936: inode #12: comm fio: pblk 0 bad header/extent: "
     "invalid magic - magic 0, entries 0, max 0(0), depth 0(0)", "EXT4-fs error in ext4_find_extent", "FS-ERROR"),
    ("EXT4-fs error (device sda1) in ext4_do_update_inode:5151: error 27", "EXT4-fs error in ext4_do_update_inode",
     "FS-ERROR"),
    ("XFS (vdc): Metadata corruption detected at xfs_dinode_verify+0x1a0/0x6d0 [xfs], inode 0x83 dinode",
     "XFS: Metadata corruption detected in xfs_dinode_verify", "FS-ERROR"),
    ("XFS (vdc): Corruption of in-memory data (0x8) detected at xfs_trans_cancel+0x14f/0x180 [xfs] "
     "(fs/xfs/xfs_trans.c:1097).  Shutting down filesystem.",
     "XFS: Corruption of in-memory data detected in xfs_trans_cancel", "FS-ERROR"),
    ("XFS: Assertion failed: xfs_is_shutdown(mp) || list_empty(&tp->t_busy), file: fs/xfs/xfs_trans.c, line: 1097",
     "XFS: Assertion failed: xfs_is_shutdown(mp) || list_empty(&tp->t_busy)", "FS-ERROR"),
    ("Buffer I/O error on dev vdc, logical block 1234, lost async page write",
     "Buffer I/O error on dev vdc, lost async page write", "IO-ERROR"),
]


@pytest.mark.parametrize("line, title, kind", FS_LINES)
def test_file_system_distress_lines(line, title, kind):
    got = parse(f"[   42.000001] {line}\n")
    assert [(r.title, r.type, r.corrupted) for r in got] == [(title, kind, False)]


def test_fs_lines_inside_a_trace_do_not_cut_it():
    lines = WARN.splitlines()
    at = lines.index(" <TASK>")
    lines.insert(at + 2, FS_LINES[0][0])
    got = parse("\n".join(lines))
    assert [r.title for r in got] == ["WARNING in ext4_dirty_folio", FS_LINES[0][1]]
    assert not got[0].corrupted and len(got[0].frames) == len(parse(WARN)[0].frames)


def test_xfs_assertion_absorbs_its_bug():
    text = (FS_LINES[5][0] + "\n------------[ cut here ]------------\n"
            "kernel BUG at fs/xfs/xfs_message.c:102!\ninvalid opcode: 0000 [#1] PREEMPT SMP NOPTI\n"
            "RIP: 0010:assfail+0x35/0x3a [xfs]\nCall Trace:\n <TASK>\n xfs_trans_cancel+0x14f/0x180 [xfs]\n"
            " </TASK>\n---[ end trace 0000000000000000 ]---\n")
    assert [r.title for r in parse(text)] == [FS_LINES[5][1]]


@pytest.mark.parametrize("line", [
    "WARNING: /etc/ssh/moduli does not exist, using fixed modulus",
    "EXT4-fs (vdc): mounted filesystem 1b4c with ordered data mode. Quota mode: none.",
    "EXT4-fs warning (device vdc): ext4_multi_mount_protect:328: MMP interval 42 higher than expected",
    "XFS (vdc): Mounting V5 Filesystem",
    "INFO: lockdep is turned off.",
    "ODEBUG: object is on stack, but not annotated",
    "BUG: no syscalls can create resource fd",
])
def test_harmless_lines_are_no_crash(line):
    assert parse(f"[    1.000000] {line}\n") == []


def test_page_dump_yields_to_the_bug_that_follows():
    text = ("page:00000000a1b2c3d4 refcount:0 mapcount:0 mapping:0000000000000000 index:0x1 pfn:0x10a2b\n"
            "flags: 0x17ffffc0000000(node=0|zone=2|lastcpupid=0x1fffff)\n"
            "page dumped because: VM_BUG_ON_FOLIO(!folio_test_locked(folio))\n" + BUG)
    assert [r.title for r in parse(text)] == ["kernel BUG in ext4_do_writepages"]
    alone = parse("page dumped because: nonzero mapcount\n")
    assert [r.title for r in alone] == ["page dumped because: nonzero mapcount"]


def test_dedup_counts_same_bug():
    reps = parse(WARN + MODULE_WARN + WARN + BUG)
    groups = dedup(reps)
    assert [(r.title, n) for r, n in groups] == [
        ("WARNING in ext4_dirty_folio", 2), ("WARNING in ext4_set_page_dirty", 1),
        ("kernel BUG in ext4_do_writepages", 1)]


def test_dedup_merges_on_alt_titles():
    gpf = parse(golden("syzbot-gpf-__device_attach"))[0]
    other = console.CrashReport("KASAN: null-ptr-deref Read in __device_attach", ["bad-access in __device_attach"],
                                "KASAN", False, "", None, [], "", 0, 0)
    assert [(r.title, n) for r, n in dedup([gpf, other])] == [("general protection fault in __device_attach", 2)]


def test_offsets_point_at_the_report():
    text = "boot ok\n" + WARN + "login: \n" + BUG
    got = parse(text)
    assert [text[r.start:].split("\n", 1)[0] for r in got] == [
        "WARNING: CPU: 1 PID: 7386 at fs/ext4/inode.c:3600 ext4_dirty_folio+0xf4/0x120 fs/ext4/inode.c:3600",
        "kernel BUG at fs/ext4/inode.c:2782!"]
    assert all(r.start < r.end <= len(text) for r in got)


def test_parse_bytes_tolerates_undecodable_bytes():
    data = b"\xff\xfe\x00garbage\x80\n" + WARN.encode() + b"\xc3\x28\n"
    assert [r.title for r in parse_bytes(data)] == ["WARNING in ext4_dirty_folio"]


def test_every_oops_kind_has_a_type_and_formats():
    for oops in oopses.OOPSES:
        assert oops.marker and oops.type and oops.formats


def test_title_text_ends_at_a_late_panic_but_the_report_keeps_it():
    import golden_console as golden

    text, _ = golden.load("corrupted-warning-stack-lost-then-panic")
    [rep] = parse(text)
    assert (rep.title, rep.corrupted_reason) == ("WARNING in ext4_dirty_folio", "no stack trace in report")
    assert "Kernel panic - not syncing" in rep.report and "check_panic_on_warn" in rep.report
    # An early panic (fewer than 22 lines in) is part of the title text: its stack counts.
    short = "\n".join(line for line in text.splitlines() if "softirqs" not in line and "DR" not in line)
    [rep] = parse(short)
    assert not rep.corrupted


def test_info_messages_with_stacks_cut_the_title_text_only_without_caller_prefixes():
    import golden_console as golden

    text, _ = golden.load("corrupted-vmalloc-failure-inside-report")
    [rep] = parse(text)
    assert rep.corrupted and rep.title.endswith(" in corrupted")
    prefixed = "\n".join(f"[T7] {line.split('] ', 1)[1]}" for line in text.splitlines())
    [rep] = parse(prefixed)
    assert rep.title == "BUG: unable to handle kernel paging request in kvm_dirty_ring_alloc"
