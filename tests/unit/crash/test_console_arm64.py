"""arm64 reports get the titles of the same crash on x86-64, and arm64's entry frames are never the culprit."""
import pytest

from harness.crash import oopses
from harness.crash.console import _skip_re, parse, parse_frame_line

import golden_console as golden

ARM64_REGS = ("pstate: 60400005 (nZCv daif +PAN -UAO -TCO -DIT -SSBS BTYPE=--)\n"
              "pc : {pc}\nlr : {lr}\nsp : ffff80000a1b3b70\n"
              "x29: ffff80000a1b3b70 x28: ffff0000c2b3a100 x27: 0000000000010000\n"
              "x2 : 0000000000000000 x1 : fffffc0003104700 x0 : ffff0000c1e2c2a0\n")
EL0_SYSCALL = (" invoke_syscall+0x50/0x120\n el0_svc_common.constprop.0+0x48/0xf0\n do_el0_svc+0x24/0x88\n"
               " el0_svc+0x2c/0x88\n el0t_64_sync_handler+0xbc/0x140\n el0t_64_sync+0x18c/0x190\n")


def arm64(head: str, pc: str, lr: str, frames: str, tail: str = "---[ end trace 0000000000000000 ]---\n") -> str:
    return (head + "Modules linked in: ext4\nCPU: 1 PID: 204 Comm: odirect Not tainted 6.1.0-57-arm64 #1\n"
            "Hardware name: linux,dummy-virt (DT)\n" + ARM64_REGS.format(pc=pc, lr=lr) + "Call trace:\n" + frames + tail)


def x86(head: str, rip: str, frames: str) -> str:
    return (head + "CPU: 1 PID: 204 Comm: odirect Not tainted 6.1.0-56-amd64 #1\n"
            f"RIP: 0010:{rip}\nRSP: 0018:ff586fa10067fa88 EFLAGS: 00000246\nCall Trace:\n <TASK>\n" + frames
            + " </TASK>\n---[ end trace 0000000000000000 ]---\n")


def titles(text: str) -> list[str]:
    return [r.title for r in parse(text)]


def test_the_ext4_dirty_folio_warning_has_one_title_on_both_architectures():
    x86_log, _ = golden.load("guest-debian61-odirect-ext4-warning")
    arm_log, _ = golden.load("guest-arm64-debian61-odirect-ext4-warning")
    x86_reps, arm_reps = parse(x86_log), parse(arm_log)
    assert x86_reps[0].title == arm_reps[0].title == "WARNING in ext4_dirty_folio"
    assert x86_reps[0].type == arm_reps[0].type == oopses.WARNING
    assert x86_reps[0].guilty_file == arm_reps[0].guilty_file == "fs/ext4/inode.c"
    assert not arm_reps[0].corrupted and arm_reps[0].frames[0].module == "ext4"


SAME_CRASH = [
    pytest.param(
        x86("kernel BUG at fs/ext4/inode.c:2782!\ninvalid opcode: 0000 [#1] PREEMPT SMP\n",
            "ext4_do_writepages+0x3c27/0x3c30",
            " ext4_writepages+0x1e0/0x290\n do_writepages+0x3c3/0x680\n wb_workfn+0xb3f/0xef0\n"
            " process_one_work+0x877/0xdb0\n worker_thread+0xb14/0x1330\n kthread+0x266/0x300\n"
            " ret_from_fork+0x1f/0x30\n"),
        arm64("kernel BUG at fs/ext4/inode.c:2782!\nInternal error: Oops - BUG: 00000000f2000800 [#1] SMP\n",
              "ext4_do_writepages+0x9c4/0x9d0 [ext4]", "ext4_do_writepages+0x1e0/0x9d0 [ext4]",
              " ext4_do_writepages+0x9c4/0x9d0 [ext4]\n ext4_writepages+0x8c/0x130 [ext4]\n do_writepages+0xa0/0x1d0\n"
              " wb_workfn+0x2a0/0x4b0\n process_one_work+0x1f0/0x468\n worker_thread+0x54/0x410\n"
              " kthread+0x124/0x138\n ret_from_fork+0x10/0x20\n",
              "Code: 97ff825f d4210000 (d4210000) 910003fd\n---[ end trace 0000000000000000 ]---\n"),
        "kernel BUG in ext4_do_writepages", id="kernel-BUG"),
    pytest.param(
        x86("BUG: kernel NULL pointer dereference, address: 0000000000000008\n#PF: supervisor read access in kernel mode\n"
            "Oops: 0000 [#1] PREEMPT SMP\n", "folio_mark_dirty+0x29/0x70",
            " unpin_user_pages_dirty_lock+0x11e/0x160\n vfio_unpin_pages_remote+0x9e/0x150 [vfio_iommu_type1]\n"
            " __x64_sys_ioctl+0x8d/0xd0\n do_syscall_64+0x5d/0xb0\n entry_SYSCALL_64_after_hwframe+0x6e/0xd8\n"),
        arm64("Unable to handle kernel NULL pointer dereference at virtual address 0000000000000008\nMem abort info:\n"
              "  ESR = 0x0000000096000004\nInternal error: Oops: 0000000096000004 [#1] SMP\n",
              "folio_mark_dirty+0x2c/0x90", "unpin_user_pages_dirty_lock+0x150/0x1a0",
              " folio_mark_dirty+0x2c/0x90\n unpin_user_pages_dirty_lock+0x150/0x1a0\n"
              " vfio_unpin_pages_remote+0xb4/0x170 [vfio_iommu_type1]\n __arm64_sys_ioctl+0xb0/0x100\n" + EL0_SYSCALL,
              "Code: f9400800 d503201f (f9400400) 36080040\n---[ end trace 0000000000000000 ]---\n"),
        "BUG: unable to handle kernel NULL pointer dereference in folio_mark_dirty", id="NULL-deref"),
    pytest.param(
        x86("BUG: unable to handle page fault for address: ffffeb0000000008\n#PF: supervisor read access in kernel mode\n"
            "Oops: 0000 [#1] PREEMPT SMP\n", "__bio_release_pages+0x15d/0x2c0",
            " __blkdev_direct_IO_simple+0x1af/0x270\n blkdev_read_iter+0x112/0x190\n vfs_read+0x23f/0x310\n"
            " __x64_sys_pread64+0x94/0xc0\n do_syscall_64+0x5d/0xb0\n"),
        arm64("Unable to handle kernel paging request at virtual address fffffc0000000008\nMem abort info:\n"
              "Internal error: Oops: 0000000096000006 [#1] SMP\n",
              "__bio_release_pages+0x1c4/0x2f0", "__blkdev_direct_IO_simple+0x1b4/0x2a0",
              " __bio_release_pages+0x1c4/0x2f0\n __blkdev_direct_IO_simple+0x1b4/0x2a0\n blkdev_read_iter+0x120/0x1b0\n"
              " vfs_read+0x24c/0x2f0\n __arm64_sys_pread64+0xa4/0xd0\n" + EL0_SYSCALL),
        "BUG: unable to handle kernel paging request in __bio_release_pages", id="paging-request"),
    pytest.param(
        x86("watchdog: BUG: soft lockup - CPU#1 stuck for 26s! [mkclean_race:211]\n",
            "clean_record_shared_mapping_range+0x2e/0x60",
            " page_mkclean_one+0x10a/0x1d0\n rmap_walk_file+0x148/0x2a0\n folio_mkclean+0x7e/0xb0\n"
            " __x64_sys_msync+0x1a8/0x200\n do_syscall_64+0x5d/0xb0\n entry_SYSCALL_64_after_hwframe+0x6e/0xd8\n"),
        arm64("watchdog: BUG: soft lockup - CPU#1 stuck for 26s! [mkclean_race:211]\n",
              "clean_record_shared_mapping_range+0x40/0x80", "page_mkclean_one+0x11c/0x200",
              " clean_record_shared_mapping_range+0x40/0x80\n page_mkclean_one+0x11c/0x200\n rmap_walk_file+0x16c/0x2c0\n"
              " folio_mkclean+0x90/0xd0\n __arm64_sys_msync+0x1c0/0x230\n" + EL0_SYSCALL, ""),
        "BUG: soft lockup in sys_msync", id="soft-lockup-syscall-anchor"),
    pytest.param(
        "rcu: INFO: rcu_preempt self-detected stall on CPU\nrcu: \t1-....: (5250 ticks this GP) idle=4d7c/1/0x4000000000000000\n"
        "NMI backtrace for cpu 1\nCPU: 1 PID: 211 Comm: mkclean_race Not tainted 6.12.57-amd64 #1\nCall Trace:\n <IRQ>\n"
        " dump_stack_lvl+0x5d/0x80\n nmi_cpu_backtrace+0xd0/0x100\n rcu_dump_cpu_stacks+0xf5/0x140\n"
        " rcu_sched_clock_irq+0x4ef/0xbb0\n update_process_times+0x8a/0xc0\n hrtimer_interrupt+0xfc/0x240\n"
        " __sysvec_apic_timer_interrupt+0x4e/0x130\n sysvec_apic_timer_interrupt+0x6c/0x90\n </IRQ>\n <TASK>\n"
        " asm_sysvec_apic_timer_interrupt+0x1a/0x20\nRIP: 0010:clean_record_shared_mapping_range+0x2e/0x60\n"
        " page_mkclean_one+0x10a/0x1d0\n rmap_walk_file+0x148/0x2a0\n folio_mkclean+0x7e/0xb0\n"
        " __x64_sys_msync+0x1a8/0x200\n do_syscall_64+0x5d/0xb0\n entry_SYSCALL_64_after_hwframe+0x6e/0xd8\n </TASK>\n",
        # 6.7+ arm64: the self-detected stall prints the interrupted registers ("NMI backtrace", via IPI or pseudo-NMI).
        arm64("rcu: INFO: rcu_preempt self-detected stall on CPU\nrcu: \t1-....: (5250 ticks this GP) idle=4d7c/1/0x4000000000000000\n"
              "NMI backtrace for cpu 1\n",
              "clean_record_shared_mapping_range+0x40/0x80", "page_mkclean_one+0x11c/0x200",
              " clean_record_shared_mapping_range+0x40/0x80 (P)\n page_mkclean_one+0x11c/0x200 (L)\n"
              " rmap_walk_file+0x16c/0x2c0\n folio_mkclean+0x90/0xd0\n __arm64_sys_msync+0x1c0/0x230\n" + EL0_SYSCALL, ""),
        "INFO: rcu detected stall in sys_msync", id="rcu-stall-nmi-backtrace"),
    pytest.param(
        x86("BUG: unable to handle page fault for address: ffffffff82234000\n#PF: supervisor write access in kernel mode\n"
            "#PF: error_code(0x0003) - permissions violation\nOops: 0003 [#1] PREEMPT SMP\n", "ext4_dirty_folio+0x40/0x70 [ext4]",
            " folio_mark_dirty+0xc1/0x140\n __bio_release_pages+0x15d/0x2c0\n blkdev_read_iter+0x112/0x190\n"),
        arm64("Unable to handle kernel write to read-only memory at virtual address ffff800081234000\nMem abort info:\n"
              "Internal error: Oops: 000000009600004f [#1] SMP\n",
              "ext4_dirty_folio+0x40/0x50 [ext4]", "folio_mark_dirty+0x58/0x90",
              " ext4_dirty_folio+0x40/0x50 [ext4]\n folio_mark_dirty+0x58/0x90\n __bio_release_pages+0x1c4/0x2f0\n"
              " blkdev_read_iter+0x120/0x1b0\n" + EL0_SYSCALL),
        "BUG: unable to handle kernel paging request in ext4_dirty_folio", id="permission-fault"),
    pytest.param(
        "INFO: task odirect:204 blocked for more than 120 seconds.\n      Not tainted 6.1.0-56-amd64 #1\n"
        "task:odirect state:D stack:0 pid:204 ppid:1 flags:0x00004002\nCall Trace:\n <TASK>\n"
        " __schedule+0x34d/0x9e0\n schedule+0x5a/0xd0\n io_schedule+0x42/0x70\n folio_wait_bit_common+0x13d/0x350\n"
        " folio_wait_writeback+0x28/0x80\n ext4_writepages+0x2a1/0x330 [ext4]\n do_writepages+0xcf/0x1e0\n </TASK>\n",
        "INFO: task odirect:204 blocked for more than 120 seconds.\n      Not tainted 6.1.0-57-arm64 #1\n"
        "task:odirect state:D stack:0 pid:204 ppid:1 flags:0x00000008\nCall trace:\n"
        " __switch_to+0xf0/0x170\n __schedule+0x340/0x940\n schedule+0x58/0xf0\n io_schedule+0x40/0x70\n"
        " folio_wait_bit_common+0x160/0x3a0\n folio_wait_writeback+0x30/0x80\n ext4_writepages+0x2b8/0x360 [ext4]\n"
        " do_writepages+0xa0/0x1d0\n" + EL0_SYSCALL,
        "INFO: task hung in ext4_writepages", id="hung-task"),
]


@pytest.mark.parametrize("x86_log,arm64_log,title", SAME_CRASH)
def test_an_arm64_report_is_titled_like_the_same_crash_on_x86(x86_log, arm64_log, title):
    x86_reps, arm_reps = parse(x86_log), parse(arm64_log)
    assert [r.title for r in x86_reps] == [r.title for r in arm_reps] == [title]
    assert x86_reps[0].type == arm_reps[0].type
    assert not arm_reps[0].corrupted, arm_reps[0].corrupted_reason


# Frames of arm64's exception, debug and syscall entry (5.10 to 6.15 names) that a trace may show above the culprit.
ARM64_ENTRY_FRAMES = (
    "el0t_64_sync", "el0t_64_sync_handler", "el0t_32_sync_handler", "el0_svc", "el0_svc_common.constprop.0",
    "do_el0_svc", "el1h_64_sync", "el1h_64_sync_handler", "el1h_64_irq", "el1h_64_irq_handler", "el1h_64_error",
    "el1h_64_error_handler", "el1_abort", "el1_dbg", "el1_interrupt", "__el1_irq", "do_mem_abort",
    "__do_kernel_fault", "do_translation_fault", "do_bad_area", "do_tag_check_fault", "die", "__die",
    "die_kernel_fault", "arm64_notify_die", "bug_handler", "bug_brk_handler", "call_break_hook",
    "call_el1_break_hook", "brk_handler", "do_debug_exception", "do_serror", "arm64_serror_panic", "__warn",
    "report_bug", "dump_backtrace", "show_stack",
)


@pytest.mark.parametrize("frame", ARM64_ENTRY_FRAMES)
def test_arm64_entry_frames_are_skipped(frame):
    assert _skip_re(()).search(frame)


@pytest.mark.parametrize("frame", ["invoke_syscall", "__arm64_sys_pread64", "ext4_dirty_folio", "diet_fn",
                                   "folio_mark_dirty", "__bio_release_pages"])
def test_syscall_anchor_and_ordinary_frames_are_not_skipped(frame):
    # invoke_syscall anchors the stall extractor as do_syscall_64 does on x86; __arm64_sys_* is stripped, not skipped.
    assert not _skip_re(()).search(frame)


def test_a_bug_reached_through_the_brk_handler_names_its_caller():
    text = ("kernel BUG at fs/ext4/inode.c:2782!\nInternal error: Oops - BUG: 00000000f2000800 [#1] SMP\n"
            "pc : die+0x1a0/0x2c0\nlr : die+0x19c/0x2c0\nCall trace:\n dump_backtrace+0x98/0xf0\n show_stack+0x18/0x28\n"
            " die+0x1a0/0x2c0\n bug_handler+0x34/0x88\n call_break_hook+0x80/0xd0\n brk_handler+0x24/0x70\n"
            " do_debug_exception+0xb8/0x140\n el1_dbg+0x40/0x58\n el1h_64_sync_handler+0x9c/0xb8\n"
            " el1h_64_sync+0x64/0x68\n ext4_do_writepages+0x9c4/0x9d0 [ext4]\n ext4_writepages+0x8c/0x130 [ext4]\n"
            "---[ end trace 0000000000000000 ]---\n")
    assert titles(text) == ["kernel BUG in ext4_do_writepages"]


def test_an_serror_taken_in_the_irq_entry_is_named_by_the_first_frame_under_it():
    # 6.3 on a Jetson TX1 (nouveau): the pc is in el1_interrupt, the panic's stack goes on below the entry frames.
    text = ("SError Interrupt on CPU3, code 0x00000000bf000002 -- SError\nCPU: 3 PID: 9 Comm: kworker/u8:0 Not tainted\n"
            "pc : el1_interrupt+0x20/0x70\nlr : el1h_64_irq_handler+0x18/0x28\nsp : ffff80000b99b880\n"
            "Kernel panic - not syncing: Asynchronous SError Interrupt\nCall trace:\n dump_backtrace+0xa8/0x138\n"
            " show_stack+0x20/0x38\n dump_stack_lvl+0x48/0x60\n panic+0x358/0x370\n nmi_panic+0xb4/0xc0\n"
            " arm64_serror_panic+0x6c/0x88\n do_serror+0x44/0x80\n el1h_64_error_handler+0x30/0x48\n"
            " el1h_64_error+0x68/0x70\n el1_interrupt+0x20/0x70\n el1h_64_irq_handler+0x18/0x28\n el1h_64_irq+0x68/0x70\n"
            " nvkm_device_ctor+0x1ba0/0x3950 [nouveau]\n platform_probe+0x70/0xd8\n ret_from_fork+0x10/0x20\n"
            "SMP: stopping secondary CPUs\n")
    [rep] = parse(text)
    assert rep.title == "SError Interrupt in nvkm_device_ctor" and rep.type == oopses.PANIC
    assert rep.alt_titles == ["kernel panic: Asynchronous SError Interrupt"] and not rep.corrupted


def test_arm64_frame_markers():
    pc = parse_frame_line(" f2fs_put_super+0xea4/0xef0 fs/f2fs/super.c:1672 (P)")
    lr = parse_frame_line(" default_idle_call+0x24/0x58 (L)")
    mod = parse_frame_line("pc : ext4_dirty_folio+0x48/0x50 [ext4]")
    assert pc.exact and pc.file == "fs/f2fs/super.c" and pc.line == 1672
    assert not lr.exact and lr.function == "default_idle_call"
    assert mod.exact and mod.module == "ext4" and (mod.offset, mod.size) == (0x48, 0x50)
    graph = parse_frame_line(" ext4_dirty_folio+0x48/0x50 [ext4 5b0e8f1c39a44d0e] (PF)")
    task = parse_frame_line(" __switch_to+0xf0/0x170 (T)")
    assert graph.exact and graph.module == "ext4" and not task.exact and task.function == "__switch_to"


def test_an_arm64_trace_ending_at_its_outermost_frame_is_not_cut():
    text = arm64("WARNING: CPU: 1 PID: 204 at fs/ext4/inode.c:3664 ext4_dirty_folio+0x48/0x50 [ext4]\n",
                 "ext4_dirty_folio+0x48/0x50 [ext4]", "__bio_release_pages+0x1c4/0x2f0",
                 " ext4_dirty_folio+0x48/0x50 [ext4]\n __bio_release_pages+0x1c4/0x2f0\n" + EL0_SYSCALL, "")
    [rep] = parse(text)
    assert rep.title == "WARNING in ext4_dirty_folio" and not rep.corrupted
    [cut] = parse(text.rsplit(" el0_svc+", 1)[0])
    assert cut.corrupted_reason == "report is cut in the middle of a stack trace"


def test_an_arm64_permission_fault_keeps_the_first_line_syzkaller_titles_it_by():
    text = arm64("Unable to handle kernel execute from non-executable memory at virtual address ffff0000c1e2c2a0\n"
                 "Internal error: Oops: 000000008600000f [#1] SMP\n", "0xffff0000c1e2c2a0", "vfs_read+0x24c/0x2f0",
                 " 0xffff0000c1e2c2a0\n vfs_read+0x24c/0x2f0\n __arm64_sys_pread64+0xa4/0xd0\n" + EL0_SYSCALL)
    [rep] = parse(text)
    assert rep.title == "BUG: unable to handle kernel paging request in vfs_read"
    assert "Unable to handle kernel execute from non-executable memory at virtual address ADDR" in rep.alt_titles
