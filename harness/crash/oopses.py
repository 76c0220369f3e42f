"""The oops table: what a kernel crash report looks like, as data.

One ``Oops`` entry per kind of report (keyed by a literal marker that must
appear on the report's first line), each with an ordered list of ``Format``s
that turn the report text into a syzbot-style title.  The engine that applies
this table lives in ``harness.crash.console``; adding a kind is one entry here plus
one golden file under tests/golden/console/.

Title conventions follow syzbot (google/syzkaller pkg/report) so a title can be
looked up on the syzbot dashboard: ``WARNING in ext4_dirty_folio``,
``kernel BUG in ext4_writepages``, ``KASAN: use-after-free Read in foo``,
``INFO: task hung in bar``, ``possible deadlock in baz``...

Regex templates may use these placeholders (expanded by ``expand``):
  {{PC}}    a bracketed address ``[<ffffffff81000000>]``
  {{FUNC}}  a function name, captured, followed by ``+`` or ``.`` (``.isra.0``)
  {{SRC}}   a source location ``fs/ext4/inode.c:3606``, captured
  {{ADDR}}  ``0x`` followed by hex digits
Format strings use 1-based positional fields like syzkaller's %[N]v: ``{1}`` is
the first group captured by ``title`` (or by ``report`` when given), and each
``stack`` extraction appends one more argument after the captured groups.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Optional

STACK = "<parse stack trace>"  # a StackSpec part meaning "frames from here on"

_PLACEHOLDERS = {
    "{{ADDR}}": r"0x[0-9a-f]+",
    "{{PC}}": r"\[<?(?:0x)?[0-9a-f]+>?\]",
    "{{FUNC}}": r"([a-zA-Z0-9_]+)(?:\.|\+)",
    "{{SRC}}": r"([a-zA-Z0-9\-_/.]+\.[a-z]+:[0-9]+)",
}


def expand(template: str) -> str:
    for key, value in _PLACEHOLDERS.items():
        template = template.replace(key, value)
    return template


# Kinds of report (CrashReport.type).
WARNING, BUG, KASAN, KFENCE, KMSAN, KCSAN, UBSAN = "WARNING", "BUG", "KASAN", "KFENCE", "KMSAN", "KCSAN", "UBSAN"
LOCKDEP, HANG, PANIC, MEMORY_LEAK, FS_ERROR, IO_ERROR = (
    "LOCKDEP", "HANG", "PANIC", "MEMORY-LEAK", "FS-ERROR", "IO-ERROR")
SYZ_FAILURE, REBOOT = "SYZ-FAILURE", "REBOOT"  # the fuzzer's own failures; a reboot nobody asked for
OOM = "OOM"  # the OOM killer ended a process: an event worth listing, not a kernel bug
TYPES = (WARNING, BUG, KASAN, KFENCE, KMSAN, KCSAN, UBSAN, LOCKDEP, HANG, PANIC, MEMORY_LEAK, FS_ERROR, IO_ERROR,
         SYZ_FAILURE, REBOOT, OOM)
EVENT_TYPES = frozenset({OOM})  # reports of these types are events: no crash and no warning of a run


@dataclass(frozen=True)
class StackSpec:
    """How to find the frame that names the bug.

    ``parts`` are matched in order over the report lines: a regex advances to
    the first line it matches (capturing groups yield frames), ``STACK`` takes
    every frame line until the next stack header.  ``parts2`` is the fallback
    when ``parts`` yields nothing, then each of ``more`` in turn.  Frames matching ``skip`` (or the global
    SKIP_FRAMES) are never the culprit.  ``extractor`` picks among the frames:
    "first", "stall" (the caller of a dispatch anchor, for lockups/stalls) or
    "hung" (for hung tasks).
    """

    parts: tuple[str, ...]
    parts2: tuple[str, ...] = ()
    skip: tuple[str, ...] = ()
    more: tuple[tuple[str, ...], ...] = ()
    extractor: str = "first"


@dataclass(frozen=True)
class Format:
    title: str  # regex searched in the report text; its groups are {1}, {2}...
    fmt: str
    report: Optional[str] = None  # if given, must match too; its groups replace title's
    alt: tuple[str, ...] = ()
    stack: Optional[StackSpec] = None
    no_stack_trace: bool = False  # no "Call Trace" expected: do not flag as corrupted
    corrupted: bool = False  # this format only matches mangled reports
    type: Optional[str] = None  # overrides Oops.type


@dataclass(frozen=True)
class Oops:
    marker: str  # literal that must appear on the first line (fast pre-filter)
    type: str
    formats: tuple[Format, ...]
    header: Optional[str] = None  # regex confirming the first line; default: the marker
    suppressions: tuple[str, ...] = ()  # first lines that look like this are no crash
    end: tuple[str, ...] = (r"---\[ end trace",)  # a line matching ends the report
    max_lines: int = 400  # report lines kept at most
    absorbs: tuple[str, ...] = ()  # later first lines that continue this report
    yields_to: tuple[str, ...] = ()  # no report of its own when one of these follows closely
    interrupts: bool = True  # False: appearing inside another report does not end it
    ours: bool = False  # a kind syzbot does not report: listed after syzbot's kinds


_RIP_FRAME = expand(
    r"(?:IP|NIP|pc |PC is at):? (?:(?:[0-9]+:)?(?:{{PC}} +){0,2}{{FUNC}}|(?:[0-9]+:)?0x[0-9a-f]+"
    r"|(?:[0-9]+:)?{{PC}} +\[< *\(null\)>\] +\(null\)|[0-9]+: +\(null\))")
RIP_FRAME = _RIP_FRAME
CALL_TRACE = r"(?:Call (?:T|t)race:)|(?:Backtrace:)"
_KASAN_END = (r"^={20,}\s*$", r"---\[ end trace")


def _warning_stack(*skip: str) -> StackSpec:
    # x86 WARNINGs name the culprit on the RIP line; otherwise take the call trace.
    return StackSpec(parts=(_RIP_FRAME, STACK), parts2=(CALL_TRACE, STACK), skip=skip)


_CALL_STACK = StackSpec(parts=(CALL_TRACE, STACK))
_RIP_STACK = StackSpec(parts=(_RIP_FRAME, CALL_TRACE, STACK))

OOPSES: tuple[Oops, ...] = (
    Oops("BUG:", BUG, (
        Format(r"BUG: KASAN:", "KASAN: {1} {3} in {4}", type=KASAN,
               report=expand(r"BUG: KASAN: ([a-z\-]+) in {{FUNC}}(?:.*\n)+?.*(Read|Write) (?:of size|at addr) (?:[0-9a-f]+)"),
               alt=("bad-access in {4}",),
               # arm64 KASAN_HW_TAGS reports come from the tag-check fault path (syzkaller's skip list).
               stack=StackSpec(parts=(expand(r"BUG: KASAN: (?:[a-z\-]+) in {{FUNC}}"), CALL_TRACE, STACK),
                               skip=("kernel_fault", "tag_check", "mem_abort", "^el1_", "^el1h_"))),
        Format(r"BUG: KASAN:", "KASAN: invalid-free in {2}", type=KASAN,
               report=expand(r"BUG: KASAN: (?:double-free or invalid-free|double-free|invalid-free) in {{FUNC}}"),
               alt=("invalid-free in {2}",),
               stack=StackSpec(parts=(expand(r"BUG: KASAN: (?:double-free or invalid-free|double-free|invalid-free) in {{FUNC}}"),
                                      CALL_TRACE, STACK), skip=("slab_", "kfree", "vunmap", "vfree"))),
        # Old KASAN (4.x): "BUG: KASAN: null-ptr-deref on address (null)" then "Read of size 8 by task".
        Format(r"BUG: KASAN: ([a-z\-]+) on address(?:.*\n)+?.*(Read|Write) of size ([0-9]+)", "KASAN: {1} {2}",
               type=KASAN, no_stack_trace=True),
        Format(r"BUG: KASAN: (.*)", "KASAN: {1}", corrupted=True, type=KASAN),
        Format(r"BUG: KMSAN:", "KMSAN: {1} in {3}", type=KMSAN,
               report=expand(r"BUG: KMSAN: ([a-z\-]+) in {{FUNC}}"),
               alt=("bad-access in {3}",), no_stack_trace=True,
               stack=StackSpec(parts=(STACK, r"(Local variable (?:(?!Local variable ).)* created at:|Uninit was created at:)", STACK),
                               skip=("alloc_skb", "netlink_ack", "netlink_rcv_skb", "_encrypt$",
                                     "^(?:crypto|cipher|drbg|rng)_"))),
        Format(r"BUG: KCSAN:", "KCSAN: {1}", report=r"BUG: KCSAN: (.*)", no_stack_trace=True, type=KCSAN),
        Format(expand(r"BUG: KFENCE: (use-after-free|out-of-bounds) (read|write) in {{FUNC}}"),
               "KFENCE: {1} {2} in {4}", alt=("bad-access in {4}",), type=KFENCE,
               stack=StackSpec(parts=(expand(r"BUG: KFENCE: (?:[a-z\- ]+) in {{FUNC}}"), STACK))),
        Format(expand(r"BUG: KFENCE: invalid free in {{FUNC}}"), "KFENCE: invalid free in {2}",
               alt=("invalid-free in {2}",), no_stack_trace=True, type=KFENCE,
               stack=StackSpec(parts=(expand(r"BUG: KFENCE: (?:[a-z\- ]+) in {{FUNC}}"), STACK))),
        Format(expand(r"BUG: KFENCE: invalid (read|write) in {{FUNC}}"), "KFENCE: invalid {1} in {3}",
               alt=("bad-access in {3}",), type=KFENCE,
               stack=StackSpec(parts=(expand(r"BUG: KFENCE: (?:[a-z\- ]+) in {{FUNC}}"), STACK))),
        Format(expand(r"BUG: KFENCE: memory corruption in {{FUNC}}"), "KFENCE: memory corruption in {2}",
               no_stack_trace=True, type=KFENCE,
               stack=StackSpec(parts=(expand(r"BUG: KFENCE: (?:[a-z\- ]+) in {{FUNC}}"), STACK))),
        Format(r"BUG: (?:unable to handle kernel paging request|unable to handle page fault for address"
               r"|Unable to handle kernel data access)",
               "BUG: unable to handle kernel paging request in {1}", alt=("bad-access in {1}",), stack=_RIP_STACK),
        Format(r"BUG: (?:unable to handle kernel NULL pointer dereference|kernel NULL pointer dereference"
               r"|Kernel NULL pointer dereference)",
               "BUG: unable to handle kernel NULL pointer dereference in {1}", alt=("bad-access in {1}",),
               stack=_RIP_STACK),
        Format(r"BUG: (?:unable to handle kernel|Unable to handle kernel)", "BUG: unable to handle kernel",
               corrupted=True),
        Format(r"BUG: (spinlock|rwlock) (lockup suspected|already unlocked|recursion|cpu recursion|bad magic"
               r"|wrong owner|wrong CPU|trylock failure on UP)", "BUG: {1} {2} in {3}", type=LOCKDEP,
               stack=StackSpec(parts=(CALL_TRACE, STACK), skip=("spin_", "_lock", "_unlock"))),
        Format(r"BUG: soft lockup", "BUG: soft lockup in {1}", alt=("stall in {1}",), type=HANG,
               stack=StackSpec(parts=(_RIP_FRAME, CALL_TRACE, STACK), extractor="stall")),
        Format(r"BUG: .*still has locks held!", "BUG: still has locks held in {1}", type=LOCKDEP,
               report=expand(r"BUG: .*still has locks held!(?:.*\n)+?.*{{PC}} +{{FUNC}}")),
        Format(r"BUG: scheduling while atomic", "BUG: scheduling while atomic in {1}",
               stack=StackSpec(parts=(CALL_TRACE, STACK), skip=("schedule",))),
        Format(r"BUG: lock held when returning to user space", "BUG: lock held when returning to user space in {1}",
               report=expand(r"BUG: lock held when returning to user space(?:.*\n)+?.*leaving the kernel with locks"
                             r" still held(?:.*\n)+?.*at: (?:{{PC}} +)?{{FUNC}}"),
               no_stack_trace=True, type=LOCKDEP),
        Format(r"BUG: bad unlock balance detected!", "BUG: bad unlock balance in {1}", type=LOCKDEP,
               stack=StackSpec(parts=(expand(r"{{PC}} +{{FUNC}}"), CALL_TRACE, STACK))),
        Format(r"BUG: held lock freed!", "BUG: held lock freed in {1}", type=LOCKDEP,
               report=expand(r"BUG: held lock freed!(?:.*\n)+?.*{{PC}} +{{FUNC}}")),
        Format(r"BUG: Bad rss-counter state", "BUG: Bad rss-counter state", no_stack_trace=True),
        Format(r"BUG: non-zero nr_ptes on freeing mm", "BUG: non-zero nr_ptes on freeing mm", no_stack_trace=True),
        Format(r"BUG: non-zero nr_pmds on freeing mm", "BUG: non-zero nr_pmds on freeing mm", no_stack_trace=True),
        Format(r"BUG: Dentry .* still in use", "BUG: Dentry still in use in {1}",
               report=r"BUG: Dentry .* still in use \([0-9]+\) \[(unmount) of ([^\]]+)\]",
               alt=("BUG: Dentry still in use [{1} of {2}]",)),
        Format(r"BUG: Bad page (state|cache)", "BUG: Bad page {1} in {2}",
               stack=StackSpec(parts=(r"page last allocated", STACK),
                               skip=("(free|put|get|update|release)_page", "free_unref", "^_*folio",
                                     "truncate_inode_pages", "page_frag_free", "alloc", "vmap", "page_owner"))),
        Format(r"BUG: Bad page map", "BUG: Bad page map"),
        Format(r"BUG: workqueue lockup", "BUG: workqueue lockup", no_stack_trace=True, type=HANG),
        Format(r"BUG: sleeping function called from invalid context at (.*)",
               "BUG: sleeping function called from invalid context in {2}", stack=_CALL_STACK),
        Format(r"BUG: using ([a-z_]+)\(\) in preemptible", "BUG: using {1}() in preemptible code in {2}", type=LOCKDEP,
               stack=StackSpec(parts=(CALL_TRACE, STACK),
                               skip=("dump_stack", "preemption", "preempt", "debug_", "processor_id", "this_cpu"))),
        Format(r"BUG: workqueue leaked lock or atomic", "BUG: workqueue leaked lock or atomic in {1}",
               report=r"BUG: workqueue leaked lock or atomic(?:.*\n)+?.*last function: ([a-zA-Z0-9_]+)\n",
               no_stack_trace=True),
        Format(r"BUG: memory leak", "memory leak in {1}", type=MEMORY_LEAK,
               stack=StackSpec(parts=(r"backtrace(?: \(crc [0-9a-fA-F]*\))?:", STACK),
                               skip=("kmemleak", "mmap", "kmem", "slab", "alloc", "create_object", "idr_get",
                                     "list_lru_init", "kasprintf", "kvasprintf", "pcpu_create", "strdup",
                                     "strndup", "memdup"))),
        Format(r"BUG: .*stack guard page was hit at", "BUG: stack guard page was hit in {1}",
               alt=("stack-overflow in {1}",),
               stack=StackSpec(parts=(_RIP_FRAME, CALL_TRACE, STACK), extractor="stall")),
        Format(r"BUG: Invalid wait context", "WARNING: locking bug in {1}", type=LOCKDEP,
               stack=StackSpec(parts=(CALL_TRACE, STACK), skip=("lock_sock", "release_sock"))),
        Format(r"BUG:[ \t]*(?:\n|$)", "BUG: corrupted", corrupted=True),
    ), suppressions=(r"ODEBUG:", r"Boot_DEBUG:", r"xlog_status:", r"DEBUG:", r"BUG: no syscalls can create resource"),
        end=_KASAN_END,
        # "BUG: Dentry ... still in use" is followed by umount_check's WARNING, whose stack it needs.
        absorbs=(r"WARNING: .*fs/dcache\.c",)),
    Oops("WARNING:", WARNING, (
        Format(r"WARNING: .*lib/debugobjects\.c.* (?:debug_print|debug_check|at)", "WARNING: ODEBUG bug in {1}",
               stack=_warning_stack("debug_", "rcu", "hrtimer_", "timer_", "work_", "percpu_", "vunmap", "vfree",
                                    "__free_", "debug_check", "kobject_")),
        Format(r"WARNING: .*mm/usercopy\.c.* (?:usercopy_warn|at)", "WARNING: bad usercopy in {1}",
               stack=_warning_stack("usercopy", "__check")),
        Format(r"WARNING: .*lib/kobject\.c.* (?:kobject_|at)", "WARNING: kobject bug in {1}",
               stack=_warning_stack("kobject_")),
        Format(r"WARNING: .*fs/proc/generic\.c.* (?:proc_register|at)", "WARNING: proc registration bug in {1}",
               stack=_warning_stack("proc_")),
        Format(r"WARNING: .*lib/refcount\.c.* (?:refcount_|at)", "WARNING: refcount bug in {1}",
               stack=_warning_stack("refcount", "kobject_")),
        Format(r"WARNING: .*kernel/locking/lockdep\.c.*lock_", "WARNING: locking bug in {1}", type=LOCKDEP,
               stack=_warning_stack("lock_sock", "release_sock")),
        Format(r"WARNING: .*still has locks held!", "WARNING: still has locks held in {1}", type=LOCKDEP,
               report=expand(r"WARNING: .*still has locks held!(?:.*\n)+?.*at: {{FUNC}}")),
        Format(r"WARNING: Nested lock was not taken", "WARNING: nested lock was not taken in {1}", type=LOCKDEP,
               stack=_warning_stack()),
        Format(r"WARNING: lock held when returning to user space",
               "WARNING: lock held when returning to user space in {1}", type=LOCKDEP, no_stack_trace=True,
               report=expand(r"WARNING: lock held when returning to user space(?:.*\n)+?.*leaving the kernel with"
                             r" locks still held(?:.*\n)+?.*at: (?:{{PC}} +)?{{FUNC}}")),
        Format(r"WARNING: .*mm/.*\.c.* k?.?malloc", "WARNING: kmalloc bug in {1}",
               stack=_warning_stack("kmalloc", "krealloc", "slab", "kmem")),
        Format(r"WARNING: .*mm/vmalloc.c.*__vmalloc_node", "WARNING: zero-size vmalloc in {1}",
               stack=_warning_stack()),
        Format(r"WARNING: .* usb_submit_urb", "WARNING in {1}/usb_submit_urb",
               stack=_warning_stack("usb_submit_urb", "usb_start_wait_urb", "usb_bulk_msg", "usb_interrupt_msg",
                                    "usb_control_msg")),
        # The one-line format of Linux 6.19+: "WARNING: fs/x.c:12 at 0x0, CPU#1: comm/123".
        Format(expand(r"WARNING: {{SRC}} at 0x\d+, CPU#\d+"), "WARNING in {2}", stack=_warning_stack()),
        # Classic: "WARNING: CPU: 0 PID: 1 at fs/ext4/inode.c:3606 ext4_dirty_folio+0x5d/0x70".
        Format(expand(r"WARNING: .* at {{SRC}} {{FUNC}}"), "WARNING in {3}", stack=_warning_stack()),
        # The one-line format with the function: "WARNING: fs/x.c:12 at func+0x1/0x2, CPU#1: comm/123".
        Format(expand(r"WARNING: {{SRC}} at {{FUNC}}"), "WARNING in {3}", stack=_warning_stack()),
        Format(expand(r"WARNING: \[.*\] {{SRC}} at {{FUNC}}.*"), "WARNING in {3}", stack=_warning_stack()),
        Format(r"WARNING: possible circular locking dependency detected", "possible deadlock in {1}", type=LOCKDEP,
               report=r"WARNING: possible circular locking dependency detected(?:.*\n)+?.*is trying to acquire lock",
               stack=StackSpec(parts=(expand(r"at: (?:{{PC}} +)?{{FUNC}}"), expand(r"at: (?:{{PC}} +)?{{FUNC}}"), STACK),
                               skip=("process_one_work", "flush_workqueue", "drain_workqueue", "destroy_workqueue"))),
        Format(r"WARNING: possible irq lock inversion dependency detected", "possible deadlock in {1}", type=LOCKDEP,
               report=expand(r"WARNING: possible irq lock inversion dependency detected(?:.*\n)+?.*just changed the"
                             r" state of lock(?:.*\n)+?.*at: (?:{{PC}} +)?{{FUNC}}")),
        Format(r"WARNING: .*-safe -> .*-unsafe lock order detected", "possible deadlock in {1}", type=LOCKDEP,
               stack=StackSpec(parts=(r"which became (?:.*) at:", STACK))),
        Format(r"WARNING: possible recursive locking detected", "possible deadlock in {1}", type=LOCKDEP,
               report=expand(r"WARNING: possible recursive locking detected(?:.*\n)+?.*is trying to acquire lock"
                             r"(?:.*\n)+?.*at: (?:{{PC}} +)?{{FUNC}}")),
        Format(r"WARNING: inconsistent lock state", "inconsistent lock state in {2}", type=LOCKDEP,
               report=expand(r"WARNING: inconsistent lock state(?:.*\n)+?.*takes(?:.*\n)+?.*at: (?:{{PC}} +)?{{FUNC}}"),
               stack=_CALL_STACK),
        Format(r"WARNING: suspicious RCU usage", "WARNING: suspicious RCU usage in {2}", type=LOCKDEP,
               report=expand(r"WARNING: suspicious RCU usage(?:.*\n)+?.*?{{SRC}}"),
               stack=StackSpec(parts=(CALL_TRACE, STACK), skip=("rcu", "kmem", "slab"))),
        Format(r"WARNING: kernel stack regs at [0-9a-f]+ in [^ ]* has bad '([^']+)' value",
               "WARNING: kernel stack regs has bad '{1}' value", no_stack_trace=True),
        Format(r"WARNING: kernel stack frame pointer at [0-9a-f]+ in [^ ]* has bad value",
               "WARNING: kernel stack frame pointer has bad value", no_stack_trace=True),
        Format(r"WARNING: bad unlock balance detected!", "WARNING: bad unlock balance in {1}", type=LOCKDEP,
               stack=StackSpec(parts=(expand(r"{{PC}} +{{FUNC}}"), CALL_TRACE, STACK))),
        Format(r"WARNING: held lock freed!", "WARNING: held lock freed in {1}", type=LOCKDEP,
               report=expand(r"WARNING: held lock freed!(?:.*\n)+?.*at:(?: {{PC}})? +{{FUNC}}")),
        # "(ptrval)" instead of an address (hashed pointers, 4.15+).
        Format(r"WARNING: kernel stack regs .* has bad 'bp' value", "WARNING: kernel stack regs has bad value",
               no_stack_trace=True),
        Format(r"WARNING: kernel stack frame pointer .* has bad value", "WARNING: kernel stack regs has bad value",
               no_stack_trace=True),
        Format(r"WARNING:[ \t]*(?:\n|$)", "WARNING: corrupted", corrupted=True),
    ), suppressions=(
        r"WARNING: /etc/ssh/moduli does not exist, using fixed modulus",
        r"WARNING: workqueue cpumask: online intersect > possible intersect",
        r"WARNING: [Tt]he mand mount option",
        r"WARNING: Unprivileged eBPF is enabled with eIBRS",
        r"WARNING: Unsupported flag value\(s\) of 0x%x in DT_FLAGS_1",
        r"WARNING: fbcon: Driver '.*' missed to adjust virtual screen size",
        r"WARNING: See https.* for mitigation options.",
        r"WARNING: kernel not compiled with CPU_SRSO",
        r"EXT4-[Ff][Ss](?: \(.*\))?:",  # __ext4_msg; ext4's own warnings are the EXT4-fs entries below
        r"(?i)warning: .* uses (deprecated v2 capabilities|wireless extensions)",
        r"XFS \(\w+\): WARNING",
    )),
    Oops("INFO:", HANG, (
        Format(r"INFO: possible circular locking dependency detected", "possible deadlock in {1}", type=LOCKDEP,
               report=expand(r"INFO: possible circular locking dependency detected \](?:.*\n)+?.*is trying to acquire"
                             r" lock(?:.*\n)+?.*at: {{PC}} +{{FUNC}}")),
        Format(r"INFO: possible recursive locking detected", "possible deadlock in {1}", type=LOCKDEP,
               report=expand(r"INFO: possible recursive locking detected \](?:.*\n)+?.*is trying to acquire lock"
                             r"(?:.*\n)+?.*at: {{PC}} +{{FUNC}}")),
        Format(r"INFO: possible irq lock inversion dependency detected", "possible deadlock in {1}", type=LOCKDEP,
               report=expand(r"INFO: possible irq lock inversion dependency detected \](?:.*\n)+?.*just changed the"
                             r" state of lock(?:.*\n)+?.*at: {{PC}} +{{FUNC}}")),
        Format(r"INFO: SOFTIRQ-safe -> SOFTIRQ-unsafe lock order detected", "possible deadlock in {1}", type=LOCKDEP,
               report=expand(r"INFO: SOFTIRQ-safe -> SOFTIRQ-unsafe lock order detected \](?:.*\n)+?.*is trying to"
                             r" acquire(?:.*\n)+?.*at: {{PC}} +{{FUNC}}")),
        Format(r"INFO: inconsistent lock state", "inconsistent lock state in {1}", type=LOCKDEP,
               report=expand(r"INFO: inconsistent lock state \](?:.*\n)+?.*takes(?:.*\n)+?.*at: {{PC}} +{{FUNC}}")),
        # The stalled CPU's stack under its timer interrupt.  arm64 before 6.7 dumps the task ("Task dump for CPU",
        # under el1_irq (<5.11) or el1h_64_irq); 6.7+ prints "NMI backtrace for cpu N" with the interrupted registers
        # and a stack that starts at their pc, as x86 shows a RIP line.
        Format(r"INFO: rcu_(?:preempt|sched|bh) (?:self-)?detected(?: expedited)? stall", "INFO: rcu detected stall in {1}",
               alt=("stall in {1}",),
               stack=StackSpec(parts=(r"apic_timer_interrupt", _RIP_FRAME, STACK),
                               parts2=(r"(?:apic_timer_interrupt|Exception stack|el1h_64_irq|el1_irq\+)", STACK),
                               more=((r"NMI backtrace for cpu", _RIP_FRAME, CALL_TRACE, STACK),),
                               skip=("apic_timer_interrupt", "rcu"), extractor="stall")),
        Format(r"INFO: trying to register non-static key", "INFO: trying to register non-static key in {1}",
               type=LOCKDEP, stack=StackSpec(parts=(CALL_TRACE, STACK), skip=("stack", "lock", "IRQ"))),
        Format(r"INFO: suspicious RCU usage", "INFO: suspicious RCU usage in {2}", type=LOCKDEP,
               report=expand(r"INFO: suspicious RCU usage(?:.*\n)+?.*?{{SRC}}"),
               stack=StackSpec(parts=(CALL_TRACE, STACK), skip=("rcu", "kmem", "slab"))),
        Format(r"INFO: task .* blocked for more than [0-9]+ seconds", "INFO: task hung in {1}", alt=("hang in {1}",),
               stack=StackSpec(parts=(CALL_TRACE, STACK), extractor="hung")),
        Format(r"INFO: task .* can't die for more than .* seconds", "INFO: task can't die in {1}",
               alt=("hang in {1}",), stack=StackSpec(parts=(CALL_TRACE, STACK), skip=("schedule",))),
        Format(r"INFO: (Freed|Allocated) in (.*)", "INFO: {1} in {2}", corrupted=True),
        # The hung-task header cut short ("INFO: t", "INFO: task syz:12 blocked for more th"): no format of
        # syzkaller's matches, so syzbot titles it by the line itself and does not call it corrupted.
        Format(r"INFO: (t(?:a(?:s(?:k(?: [^\n]*)?)?)?)?)(?=\n|$)", "INFO: {1}", no_stack_trace=True),
        Format(r"INFO:[ \t]*(?:\n|$)", "INFO: corrupted", corrupted=True),
    ), suppressions=(
        r"INFO: lockdep is turned off", r"INFO: Stall ended before state dump start", r"INFO: NMI handler",
        r"INFO: recovery required on readonly filesystem", r"(handler|interrupt).*took too long",
        r"_INFO:", r"INFO: sys_.* is not present in /proc/kallsyms", r"INFO: no syscalls can create resource",
        r"rmt_storage:INFO:",
    ), end=()),
    Oops("detected hard LOCKUP", HANG, (
        # No syzbot rule: named like the soft lockup, by the looping frame under the NMI.
        Format(r"Watchdog detected hard LOCKUP on cpu", "BUG: hard lockup in {1}", alt=("stall in {1}",),
               stack=StackSpec(parts=(_RIP_FRAME, CALL_TRACE, STACK), parts2=(CALL_TRACE, STACK),
                               extractor="stall")),
    ), end=(r"---\[ end trace", r"</NMI>")),
    Oops("Unable to handle kernel", BUG, (
        Format(r"Unable to handle kernel (paging request|NULL pointer dereference|access to user memory)",
               "BUG: unable to handle kernel {1} in {2}", alt=("bad-access in {2}",), stack=_RIP_STACK),
        # arm64's permission faults (arch/arm64/mm/fault.c __do_kernel_fault, do_page_fault): x86 reports the same
        # faults as "unable to handle page fault", titled a paging request.  syzkaller has no format for them and
        # keeps the first line, which stays an alternative title.
        Format(r"Unable to handle kernel (write to read-only memory|read from unreadable memory"
               r"|execute from non-executable memory|execution of user memory|access to hypervisor-protected memory)"
               r" at virtual address", "BUG: unable to handle kernel paging request in {2}",
               alt=("bad-access in {2}", "Unable to handle kernel {1} at virtual address ADDR"), stack=_RIP_STACK),
    )),
    Oops("general protection fault", BUG, (
        Format(r"general protection fault.*:", "general protection fault in {1}", alt=("bad-access in {1}",),
               stack=_RIP_STACK),
    ), suppressions=(r"general protection fault .* error:\d+ in ",)),
    Oops("stack segment: ", BUG, (
        Format(r"stack segment: ", "stack segment fault in {1}", stack=_RIP_STACK),
    )),
    Oops("Kernel panic", PANIC, (
        Format(r"Kernel panic - not syncing: stack-protector:", "kernel panic: stack is corrupted in {1}",
               report=expand(r"Kernel panic - not syncing: stack-protector: Kernel stack is corrupted in: {{FUNC}}"),
               no_stack_trace=True),
        Format(r"Kernel panic - not syncing: stack-protector:", "kernel panic: stack is corrupted in {1}",
               report=r"Kernel panic - not syncing: stack-protector: Kernel stack is corrupted in: [a-f0-9]+",
               stack=StackSpec(parts=(CALL_TRACE, STACK), skip=("stack_chk",))),
        Format(r"Kernel panic - not syncing: corrupted stack end", "kernel panic: corrupted stack end in {1}",
               report=r"Kernel panic - not syncing: corrupted stack end detected inside scheduler",
               alt=("stack-overflow in {1}",),
               stack=StackSpec(parts=(CALL_TRACE, STACK), skip=("schedule", "retint_kernel"), extractor="stall")),
        Format(r"Kernel panic - not syncing: kernel stack overflow", "kernel stack overflow in {1}",
               alt=("stack-overflow in {1}",),
               stack=StackSpec(parts=(CALL_TRACE, STACK), skip=("bad_stack",), extractor="stall")),
        Format(r"Kernel panic - not syncing: Attempted to kill init!", "kernel panic: Attempted to kill init!"),
        Format(r"Kernel panic - not syncing: Couldn't open N_TTY ldisc for [^ ]+ --- error -[0-9]+",
               "kernel panic: Couldn't open N_TTY ldisc"),
        # Printed after the BUG/WARNING/hang that caused them: seen alone, the real header was lost.
        Format(r"Kernel panic - not syncing: Fatal exception", "kernel panic: Fatal exception", corrupted=True),
        Format(r"Kernel panic - not syncing: panic_on_warn set", "kernel panic: panic_on_warn set", corrupted=True),
        Format(r"Kernel panic - not syncing: hung_task: blocked tasks", "kernel panic: hung_task: blocked tasks",
               corrupted=True),
        Format(r"Kernel panic - not syncing: (.*)", "kernel panic: {1}"),
    ), end=(r"---\[ end Kernel panic",)),
    Oops("PANIC: double fault", PANIC, (
        Format(r"PANIC: double fault", "PANIC: double fault in {1}", stack=StackSpec(parts=(_RIP_FRAME,))),
    )),
    Oops("kernel BUG", BUG, (
        Format(r"kernel BUG at mm/usercopy.c", "BUG: bad usercopy in {1}",
               stack=StackSpec(parts=(CALL_TRACE, STACK), skip=("usercopy", "__check"))),
        Format(r"kernel BUG at lib/list_debug.c", "BUG: corrupted list in {1}", alt=("bad-access in {1}",),
               stack=_CALL_STACK),
        Format(r"kernel BUG at (.*)", "kernel BUG in {2}",
               stack=StackSpec(parts=(_RIP_FRAME, CALL_TRACE, STACK), skip=("^skb_",))),
    )),
    Oops("BUG kmalloc-", BUG, (
        Format(r"BUG kmalloc-.*: Object already free", "BUG: Object already free"),
    )),
    Oops("divide error:", BUG, (
        Format(r"divide error: ", "divide error in {1}", stack=StackSpec(parts=(_RIP_FRAME,))),
    )),
    # A misspelling of the above since 9d06c4027f21 ("x86/entry: Convert Divide Error to IDTENTRY").
    Oops("divide_error:", BUG, (
        Format(r"divide_error: ", "divide error in {1}", stack=StackSpec(parts=(_RIP_FRAME,))),
    )),
    Oops("int3: ", BUG, (
        Format(r"int3: ", "int3 in {1}", stack=StackSpec(parts=(_RIP_FRAME,))),
    )),
    Oops("Kernel BUG", BUG, (
        Format(r"Kernel BUG (.*)", "kernel BUG {1}"),
    )),
    # ARM32: "Internal error: Oops: 5 [#1] PREEMPT SMP ARM", "Unhandled fault: page domain fault (0x01b) at
    # 0x00000000", "Alignment trap: not handling instruction e1953f9f at [<c06a4d84>]"; the culprit is on "PC is at".
    Oops("Internal error:", BUG, (
        Format(r"Internal error:", "Internal error in {1}", alt=("bad-access in {1}",), stack=_RIP_STACK),
    )),
    # arm64 (arch/arm64/kernel/traps.c arm64_serror_panic): "SError Interrupt on CPU5, code 0xbf000002 -- SError",
    # the registers, then "Kernel panic - not syncing: Asynchronous SError Interrupt" with the stack.  syzbot only
    # sees the panic and calls it "kernel panic: Asynchronous SError Interrupt" (kept as an alternative title); the
    # pc names where the asynchronous abort was taken, or else the first frame under the exception entry.
    Oops("SError Interrupt", PANIC, (
        Format(r"SError Interrupt on CPU[0-9]+", "SError Interrupt in {1}",
               alt=("kernel panic: Asynchronous SError Interrupt",), no_stack_trace=True,
               stack=StackSpec(parts=(_RIP_FRAME,), parts2=(CALL_TRACE, STACK))),
    ), header=r"SError Interrupt on CPU[0-9]+, code", ours=True),
    Oops("Unhandled fault:", BUG, (
        Format(r"Unhandled fault:", "Unhandled fault in {1}", alt=("bad-access in {1}",), stack=_RIP_STACK),
    ), absorbs=(r"Internal error:",)),
    Oops("Alignment trap:", BUG, (
        Format(r"Alignment trap:", "Alignment trap in {1}", stack=_RIP_STACK),
    ), absorbs=(r"Unhandled fault:", r"Internal error:")),
    # Rust: "rust_kernel: panicked at rust/kernel/x.rs:12:5:" then the message on the next line.
    Oops("rust_kernel: panicked", PANIC, (
        Format(r"rust_kernel: panicked", "{1} in {2}", report=r"rust_kernel: panicked at [^\n]*?\n(.+?)\n",
               stack=StackSpec(parts=(CALL_TRACE, STACK), skip=(r"rust_begin_unwind",))),
    ), absorbs=(r"kernel BUG at rust/", r"invalid opcode:")),  # the BUG() that the panic handler calls
    Oops("trusty: panic", PANIC, (
        Format(r"trusty: panic.* ASSERT FAILED", "trusty: ASSERT FAILED: {1}", no_stack_trace=True,
               report=r"trusty: panic \([^)]{0,64}\):(?: DEBUG)? ASSERT FAILED at \([^)]{0,256}\): (.+)"),
        Format(r"trusty: panic.* ASSERT FAILED.*: *(.*)", "trusty: ASSERT FAILED: {1}", corrupted=True),
        Format(r"trusty: panic", "trusty: panic: {1}", report=r"trusty: panic \([^)]{0,64}\): (.+)", no_stack_trace=True),
    )),
    Oops("Booting the kernel.", REBOOT, (
        Format(r"^Booting the kernel", "unexpected kernel reboot", no_stack_trace=True),
    ), suppressions=(r"Parsing ELF|Decompressing Linux|Unknown parameter '",), max_lines=1),
    Oops("unregister_netdevice: waiting for", HANG, (
        Format(r"unregister_netdevice: waiting for (?:.*) to become free",
               "unregister_netdevice: waiting for DEV to become free", no_stack_trace=True),
    ), max_lines=1, interrupts=False),
    Oops("VFS: Close: file count is 0", FS_ERROR, (
        Format(r"VFS: Close: file count is 0", "VFS: Close: file count is zero (use-after-free)",
               no_stack_trace=True),
    ), max_lines=1, interrupts=False),
    # The fuzzer's own failures (syz-executor's fail(), log.Fatal) and Go runtime crashes.
    Oops("SYZFAIL:", SYZ_FAILURE, (
        Format(r"SYZFAIL:(.*)", "SYZFAIL:{1}", no_stack_trace=True),
    ), suppressions=(r"SYZFAIL: SIGBUS",), max_lines=1),
    Oops("SYZFATAL:", SYZ_FAILURE, (
        Format(r"SYZFATAL:(.*)()", "SYZFATAL:{1}", alt=("SYZFATAL{2}",), no_stack_trace=True),
    ), max_lines=1),
    Oops("fatal error:", SYZ_FAILURE, (
        Format(r"fatal error:", "go runtime error", no_stack_trace=True),
    ), suppressions=(r"ALSA", r"fatal error: cannot create timer", r"fatal error: runtime: out of memory",
                     r"fatal error: runtime: cannot allocate memory", r"fatal error: unexpected signal during runtime"),
        max_lines=1),
    Oops("invalid opcode:", BUG, (
        Format(r"invalid opcode: ", "invalid opcode in {1}", stack=StackSpec(parts=(_RIP_FRAME,))),
    )),
    Oops("UBSAN:", UBSAN, (
        Format(r"UBSAN:", "UBSAN: undefined-behaviour in {1}", report=r"UBSAN: Undefined behaviour in",
               stack=StackSpec(parts=(CALL_TRACE, STACK), skip=("ubsan", "overflow"))),
        Format(r"UBSAN: array-index-out-of-bounds in", "UBSAN: array-index-out-of-bounds in {1}",
               alt=("bad-access in {1}",), stack=StackSpec(parts=(CALL_TRACE, STACK), skip=("ubsan", "overflow"))),
        Format(r"UBSAN:", "UBSAN: {1} in {2}", report=r"UBSAN: ((?:(?!UBSAN: ).)*?) in",
               stack=StackSpec(parts=(CALL_TRACE, STACK), skip=("ubsan", "overflow"))),
    ), end=_KASAN_END),
    Oops("VFS: Busy inodes after unmount", FS_ERROR, (
        Format(r"VFS: Busy inodes after unmount", "VFS: Busy inodes after unmount (use-after-free)",
               no_stack_trace=True),
    ), max_lines=1, interrupts=False),
    # File-system distress that is no oops: one line each, no stack expected (our own kinds).
    Oops("EXT4-fs error", FS_ERROR, (
        Format(r"EXT4-fs error \([^)]{0,64}\)(?::| in) ([a-zA-Z0-9_]+)", "EXT4-fs error in {1}", no_stack_trace=True),
        Format(r"EXT4-fs error", "EXT4-fs error", no_stack_trace=True),
    ), max_lines=1, interrupts=False, ours=True),
    Oops("EXT4-fs warning", FS_ERROR, (
        Format(r"EXT4-fs warning \([^)]{0,64}\): ([a-zA-Z0-9_]+):.*does not have buffers attached",
               "EXT4-fs warning in {1}: page does not have buffers attached", no_stack_trace=True),
    ), header=r"EXT4-fs warning .*does not have buffers attached", max_lines=1, interrupts=False, ours=True),
    Oops("XFS: Assertion failed", FS_ERROR, (
        Format(r"XFS: Assertion failed: ((?:(?!XFS: Assertion failed: ).)*), file: ([^,]+), line: [0-9]+",
               "XFS: Assertion failed: {1}",
               alt=("XFS: Assertion failed in {2}",), no_stack_trace=True),
    ), max_lines=120, ours=True,
        # CONFIG_XFS_DEBUG turns the assertion into a BUG (or a WARNING with XFS_WARN) in assfail/asswarn.
        absorbs=(r"kernel BUG at fs/xfs/xfs_message\.c", r"WARNING: .*fs/xfs/xfs_message\.c",
                 r"invalid opcode:")),
    Oops("XFS (", FS_ERROR, (
        Format(expand(r"XFS \([^)]{0,64}\): (Metadata corruption|Corruption of in-memory data|Metadata CRC error)"
                      r".* detected at {{FUNC}}"), "XFS: {1} detected in {2}", no_stack_trace=True),
        Format(r"XFS \([^)]{0,64}\): (Corruption warning|Corruption detected)", "XFS: {1}", no_stack_trace=True),
    ), header=r"XFS \([^)]{0,64}\): (?:Metadata corruption|Corruption|Metadata CRC error)", max_lines=1, interrupts=False,
        ours=True),
    Oops("Buffer I/O error", IO_ERROR, (
        Format(r"Buffer I/O error on dev ([^,]+), logical block [0-9]+, (.*)", "Buffer I/O error on dev {1}, {2}",
               no_stack_trace=True),
        Format(r"Buffer I/O error on dev ([^,\s]+)", "Buffer I/O error on dev {1}", no_stack_trace=True),
    ), max_lines=1, interrupts=False, ours=True),
    # mm/oom_kill.c: "Out of memory: Killed process 123 (hog) total-vm:..." (global OOM; "Kill process ... or
    # sacrifice child" then "Killed process ..." before 5.1) and "Memory cgroup out of memory: Killed process ...".
    Oops("Killed process", OOM, (
        Format(r"Memory cgroup out of memory: Killed process [0-9]+ \(([^)\n]{1,64})\)", "OOM kill: {1}",
               alt=("OOM kill in a memory cgroup: {1}",), no_stack_trace=True),
        Format(r"Killed process [0-9]+ \(([^)\n]{1,64})\)", "OOM kill: {1}", no_stack_trace=True),
    ), header=r"Killed process [0-9]+ \(", max_lines=1, interrupts=False, ours=True),
    Oops("page dumped because", BUG, (
        Format(r"page dumped because: (.*)", "page dumped because: {1}", no_stack_trace=True),
    ), header=r"^page dumped because:", max_lines=1, interrupts=False, ours=True,
        # VM_BUG_ON_PAGE & co dump the page, then BUG: syzbot names the BUG.
        yields_to=(r"kernel BUG at", r"WARNING:", r"BUG:", r"invalid opcode:")),
)

# Every Oops.marker contains one of these: a line is only looked at when it holds one.  Each anchor is
# searched with str.find, a chunk of MARKER_CHUNK characters at a time, and a chunk is skipped at once
# when it lacks the anchor's rarest character in this log (one memchr): the common case in a log of
# workload output, where most anchors' capitals never occur.  Fewer anchors than markers: fewer passes.
MARKER_ANCHORS: tuple[str, ...] = (
    "BUG", "WARNING:", "INFO:", "LOCKUP", "VFS: ", "SYZF", "UBSAN:", "EXT4-fs ", "XFS", "Alignment trap:",
    "Booting the kernel.", "Unable to handle kernel", "Buffer I/O error", "Killed process",
    "panic",  # Kernel panic, rust_kernel: panicked, trusty: panic
    "fault",  # general protection fault, PANIC: double fault, Unhandled fault:
    "error:",  # divide error:, divide_error:, Internal error:, fatal error:
    "segment: ", "int3: ", "unregister_netdevice", "opcode:", "page dumped", "SError Interrupt",
)
MARKER_CHUNK = 1 << 16
MARKER_SAMPLE = (16, 1024)  # the rarest characters are counted in 16 evenly spread slices of 1 KB

# First lines that never start a report of their own when they follow one
# (within CONTINUATION_WINDOW lines of its end): they are part of it.
CONTINUATIONS: tuple[str, ...] = (
    r"invalid opcode: 0000",
    r"Kernel panic - not syncing",
    r"PANIC: double fault",
    r"Internal error:",
)
CONTINUATION_WINDOW = 60
YIELD_WINDOW = 12  # lines within which a ``yields_to`` header must follow

# Bounds that keep parsing linear on any log.  The kernel cuts a printk record at 1024 bytes, so a
# longer line is user-space output: it is cut too before any regex sees it.  A report keeps at most
# Oops.max_lines lines and MAX_REPORT_CHARS characters, and looks at no more than MAX_SCAN_LINES
# lines / MAX_SCAN_CHARS characters after its first line, other callers' lines included.
MAX_LINE_CHARS = 1024
MAX_REPORT_CHARS = 256 * 1024
MAX_SCAN_LINES = 4000
MAX_SCAN_CHARS = 2 * 1024 * 1024

# Lines after which everything in the report is another CPU's business (NMI backtraces).
CPU_TRACEBACK = r"Sending NMI from CPU"

# syzkaller's corrupted-report rules that decide which part of a report its title comes from (the report
# text itself keeps every line):
# - messages that are no bug but print a stack of their own; met inside a report of a log without caller
#   prefixes they may be another task's, so the title comes from the lines before them (their stack would
#   name the wrong frame; a report left without frames is corrupted);
INFO_WITH_STACK: tuple[str, ...] = (
    "vmalloc: allocation failure:", "FAULT_INJECTION: forcing a failure", "FAULT_FLAG_ALLOW_RETRY missing",
)
# - after this many lines (the first included), these lines start the panic_on_warn panic or a lockdep splat
#   the oops caused: their stacks are not the bug's (a report whose own stack was lost is corrupted).
TITLE_STOPS: tuple[str, ...] = (r"Kernel panic - not syncing", r"WARNING: possible circular locking dependency detected")
TITLE_STOP_MIN_LINES = 22
TITLE_STOP_MIN_LINES_BY_HEADER: tuple[tuple[str, int], ...] = (("BUG: KMSAN:", 16),)  # KMSAN has fewer lines

# riscv's show_regs() ends with this line when called from the kernel; the stack follows with no header.
RISCV_STACK_START = r"status: [0-9a-f]{16} badaddr: [0-9a-f]{16} cause: [0-9a-f]{16}"
# Lines that start a stack trace (a report that has one must show frames after it).
STACK_STARTS: tuple[str, ...] = (
    r"Call (?:T|t)race",
    r"Allocated:",
    r"Allocated by task [0-9]+:",
    r"Freed:",
    r"Freed by task [0-9]+:",
    r"[^k] backtrace(?: \(crc [0-9a-fA-F]*\))?:",  # "backtrace:" but not "stack backtrace:"
    r"Backtrace:",
    r"Uninit was stored to memory at",
    RISCV_STACK_START,
)
# Stack starts that may have no frames after them without the report being corrupted.
OPTIONAL_STACK_STARTS: tuple[str, ...] = (RISCV_STACK_START,)

# A line holding one frame; group 1 is the function.  ARM32 prints "[<pc>] (func) from [<pc>] (caller+0x1/0x2)":
# both functions are frames (groups 2 and 3; the first is only in LR otherwise).
FRAME_LINE = expand(r"^ *(?:{{PC}} ){0,2}{{FUNC}}|^ *{{PC}} \(([a-zA-Z0-9_.]+)\) from {{PC}} \({{FUNC}}")
# Frames the unwinder is not sure of are no culprit: powerpc's "func+0x1/0x2 (unreliable)".
UNRELIABLE_FRAME = r"\(unreliable\)\s*$"

# A last line that ends a stack trace properly (a log that stops right after it is not cut mid-trace).
# arm64 prints no closing marker: its unwinder stops at the outermost frame of the task (the user-mode exception
# vector, ret_from_fork, or the boot and secondary CPU entry).
STACK_END = (r"</(?:TASK|IRQ|NMI|SOFTIRQ)>|---\[ end|Kernel panic|Rebooting|^\s*$|RIP: 0033:|R1[35]: |Code: "
             r"|^ *(?:ret_from_fork|el0t_(?:64|32)_(?:sync|irq|fiq|error)|el0_(?:sync|irq|error)(?:_compat)?"
             r"|__primary_switched|__secondary_switched)\+0x")

# syzbot's finer types (pkg/report/crash), by title prefix; the first match wins.
SUBTYPES: tuple[tuple[str, str], ...] = (
    ("KFENCE: use-after-free write", "KFENCE-USE-AFTER-FREE-WRITE"),
    ("KFENCE: use-after-free", "KFENCE-USE-AFTER-FREE-READ"),
    ("KFENCE: invalid write", "KFENCE-WRITE"), ("KFENCE: out-of-bounds write", "KFENCE-WRITE"),
    ("KFENCE: invalid read", "KFENCE-READ"), ("KFENCE: out-of-bounds", "KFENCE-READ"),
    ("KFENCE: memory corruption", "KFENCE-MEMORY-CORRUPTION"), ("KFENCE: invalid free", "KFENCE-INVALID-FREE"),
    ("KMSAN: uninit-value", "KMSAN-UNINIT-VALUE"),
    ("KMSAN: kernel-infoleak-after-free", "KMSAN-USE-AFTER-FREE-READ"),
    ("KMSAN: kernel-usb-infoleak-after-free", "KMSAN-USE-AFTER-FREE-READ"),
    ("KMSAN: use-after-free", "KMSAN-USE-AFTER-FREE-READ"),
    ("KMSAN: kernel-infoleak", "KMSAN-INFO-LEAK"), ("KMSAN: kernel-usb-infoleak", "KMSAN-INFO-LEAK"),
    ("KASAN: null-ptr-deref Write", "KASAN-NULL-PTR-DEREF-WRITE"),
    ("KASAN: null-ptr-deref Read", "KASAN-NULL-PTR-DEREF-READ"),
    ("KASAN: double-free or invalid-free", "KASAN-INVALID-FREE"), ("KASAN: invalid-free", "KASAN-INVALID-FREE"),
    ("KASAN: slab-use-after-free Write", "KASAN-USE-AFTER-FREE-WRITE"),
    ("KASAN: use-after-free Write", "KASAN-USE-AFTER-FREE-WRITE"),
    ("KASAN: slab-use-after-free", "KASAN-USE-AFTER-FREE-READ"), ("KASAN: use-after-free", "KASAN-USE-AFTER-FREE-READ"),
    *((f"KASAN: {kind} Write", "KASAN-WRITE") for kind in (
        "global-out-of-bounds", "out-of-bounds", "slab-out-of-bounds", "stack-out-of-bounds", "user-memory-access",
        "vmalloc-out-of-bounds", "wild-memory-access")),
    *((f"KASAN: {kind}", "KASAN-READ") for kind in (
        "global-out-of-bounds", "invalid-access", "out-of-bounds", "slab-out-of-bounds", "stack-out-of-bounds",
        "unknown-crash", "user-memory-access", "vmalloc-out-of-bounds", "wild-memory-access")),
    ("KASAN:", "KASAN-UNKNOWN"),
    ("KCSAN: data-race", "KCSAN-DATARACE"), ("KCSAN: assert: race in", "KCSAN-ASSERT"), ("KCSAN:", "KCSAN-UNKNOWN"),
    ("BUG: scheduling while atomic in", "ATOMIC_SLEEP"),
    ("BUG: sleeping function called from invalid context in", "ATOMIC_SLEEP"),
)

# Lines that mean another report (fault injection) is interleaved: corrupted.
CORRUPTED_LINES: tuple[str, ...] = (
    r"^( \[<?(?:0x)?[0-9a-f]+>?\])? should_fail(slab)?(\.[a-z0-9.]+)?\+0x",
)
# A title that matches these was assembled from interleaved lines.
CORRUPTED_TITLES: tuple[str, ...] = (r"\[ *[0-9]+\.[0-9]+\]",)

# Functions that are never the culprit (matched as regex search on the function name).
SKIP_FRAMES: tuple[str, ...] = (
    "__sanitizer", "__asan", "kasan", "hwasan", "__msan", "kmsan", "kcsan_setup_watchpoint",
    "check_memory_region", "check_heap_object", "check_object", "read_word_at_a_time",
    "(read|write)_once_.*nocheck", "print_address_description", "panic", "invalid_op", "report_bug",
    "fixup_bug", "print_report", "print_usage_bug", "do_error", r"_trap$|do_trap", "show_stack",
    "dump_stack", "walk_stack", "dump_backtrace", "warn_slowpath", "warn_alloc", "warn_bogus", "__warn",
    "alloc_page", "k?v?(?:m|z|c)alloc", "krealloc", "kmem_cache", "allocate_slab",
    "__alloc_frozen_pages_noprof", "folio_(?:alloc|unlock)", "filemap_alloc_folio", "__filemap_get_folio",
    "find_or_create_page", "do_read_cache_folio", "read_cache_page", "pagecache_get_page",
    "grab_cache_page_write_begin", "slab_", "debug_object", "timer_is_static_object",
    "work_is_static_object", "__might_fault", "print_unlock", "imbalance_bug", "lockdep", "bh_enable",
    "bh_disable", "perf_trace", "lock_acquire", "lock_release", "lock_class", "mark_lock",
    "(reacquire|mark)_held_locks", "raw_spin_rq", "spin_lock", "spin_trylock", "spin_unlock", "read_lock",
    "read_trylock", "write_lock", "write_trylock", "read_unlock", "write_unlock", "^down$", "down_read",
    "down_write", "down_read_trylock", "down_write_trylock", "down_trylock", "up_read", "up_write",
    "^mutex_", "^__mutex_", "^rt_mutex_", "owner_on_cpu", "osq_lock", "osq_unlock",
    "atomic(64)?_(dec|inc|read|set|or|xor|and|add|sub|fetch|xchg|cmpxchg|try)", "(set|clear|change|test)_bit",
    "__wake_up", "^refcount_", "^kref_", "ref_tracker", "seqprop_assert", "memcpy", "memcmp", "memset",
    "memchr", "memmove", "memdup", "strcmp", "strncmp", "strcpy", "strlcpy", "strncpy", "strscpy", "strlen",
    "strstr", "strnstr", "strnlen", "strchr", "strdup", "strndup", "copy_to_user", "copy_from_user",
    "copy_to_iter", "copy_from_iter", "copy_page_to_iter", "copy_page_from_iter", "copy_folio_to_iter",
    "^copyin$", "^copyout$", "put_user", "get_user", "might_fault", "might_sleep", "list_add", "list_del",
    "list_replace", "list_move", "list_splice", "^rb_", "^__rb_", "_indirect_thunk_", "string", "pointer",
    "snprintf", "scnprintf", "kasprintf", "kvasprintf", "printk", "va_format", "dev_info", "dev_notice",
    "dev_warn", "dev_err", "dev_alert", "dev_crit", "dev_emerg", "del_timer", "flush_work",
    "__cancel_work_timer", "cancel_work_sync", "try_to_grab_pending", "flush_workqueue", "drain_workqueue",
    "destroy_workqueue", "queue_work", "finish_wait", "kthread_stop", "kobject_", "add_uevent_var",
    "get_device_parent", "device_add", "device_del", "device_unregister", "device_destroy", "device_release",
    "devres_release_all", "^complete$", "wait_for_completion", "^kv?free$", "kfree_skb", "readb$", "readw$",
    "readl$", "readq$", "writeb$", "writew$", "writel$", "writeq$", r"^crc\d+", "__might_resched",
    "assertfail", "^iput$", "^iput_final$", "^ihold$", "hex_dump_to_buffer", "print_hex_dump", "^klist_",
    "(trace|lockdep)_(hard|soft)irq", "^(un)?lock_page", "stack_trace_consume_entry", "arch_stack_walk",
    "stack_trace_save", "insert_work", "__queue_delayed_work", "queue_delayed_work_on", "ida_free",
    "print_tainted", "xas_(?:start|load|find)", "find_lock_entries", "truncate_inode_pages_range",
    "__phys_addr", "__fortify_report", "cleanup_srcu_struct", "rhashtable_lookup", "drop_nlink",
    "^get_taint$", "^put_device$", "lock_timer_base", "__timer_delete_sync", "__mod_timer", "fast_dput",
    "dput", "program_check_exception", "program_check_common", "hwrng_unregister", "i2c_del_adapter",
    "__unregister_client", "device_for_each_child", "rollback_registered", "unregister_netdev", "sysfs_remove",
    "device_remove_file", "tty_unregister_device", "dummy_urb_enqueue", "usb_kill_urb", "usb_kill_anchored_urbs",
    "usb_control_msg", "usb_hcd_submit_urb", "usb_submit_urb", "logic_in", "logic_out", "crc_itu_t",
    "sk_stop_timer_sync", "mark_buffer_dirty", "extract_(user|iter)_to_sg",
    # arm64 exception entry and exit (arch/arm64/kernel/entry*.{S,c}, traps.c, debug-monitors.c, mm/fault.c):
    # the vectors, their C handlers, the fault/BUG/debug paths and the user-mode syscall entry are never the
    # culprit.  invoke_syscall stays: it is the stall anchor that do_syscall_64 is on x86 (STALL_ANCHORS), and
    # __arm64_sys_* are titled without their prefix, as __x64_sys_* are (STRIP_FRAME_PREFIXES).
    "do_(kernel|translation)_fault", "do_mem_abort", "el1_abort", "el1h_64_sync(?:_handler)?",
    "^el1h_64_(?:irq|fiq|error)(?:_handler)?$", "^el1_(?:pc|undef|bti|dbg|fpac|inv|interrupt|brk64)$", "^__el1_irq$",
    "^el0t_(?:64|32)_(?:sync|irq|fiq|error)", "^el0_svc$", "^do_el0_svc", "el0_svc_common",
    "^(?:do_debug_exception|do_serror|do_bad_area|do_tag_check_fault|do_el1_(?:undef|bti|fpac)|do_undefinstr)$",
    "^(?:call_(?:el1_)?break_hook|brk_handler|bug_handler|bug_brk_handler|early_brk64|reserved_fault_handler)$",
    "^(?:__die|die|die_kernel_fault|arm64_notify_die|arm64_force_sig_fault)$",
)

# Prefixes that differ between architectures/kernels for the same syscall frame.
STRIP_FRAME_PREFIXES: tuple[str, ...] = (
    "SYSC_", "SyS_", "sys_", "__x64_", "__ia32_", "__arm64_", "____sys_", "___sys_", "__sys_", "__se_",
    "__se_sys_", "__do_sys_", "compat_SYSC_", "compat_SyS_", "ksys_",
)

# "stall" extractor: the frame just above the first of these names the stall.
STALL_ANCHORS: tuple[str, ...] = (
    "process_one_work", "do_syscall_", "do_fast_syscall_", "sysenter_dispatch", "tracesys_phase2",
    "el0_svc_handler", "invoke_syscall", "ret_fast_syscall", "netif_receive_skb", "do_softirq",
    "call_timer_fn", "_run_timers", "run_timer_softirq", "hrtimer_run", "run_ksoftirqd", "smpboot_thread_fn",
    "^kthread$", "start_secondary", "cpu_startup_entry", "ret_from_fork", "vfs_write", "vfs_read",
    "vfs_iter_read", "vfs_iter_write", "do_iter_read", "do_iter_write", "call_read_iter", "call_write_iter",
    "new_sync_read", "new_sync_write", "vfs_ioctl", "ksys_ioctl", "compat_ioctl", "compat_sys_ioctl",
    "blkdev_driver_ioctl", "blkdev_ioctl", "do_iter_readv_writev", "^call_mmap", "mmap_region", "do_mmap",
    "do_dentry_open", "vfs_open", "^sock_sendmsg", "^sock_recvmsg", "^sock_release", "^__sock_release",
    "^setsockopt$", "kernel_setsockopt", "sock_common_setsockopt", "^listen$", "kernel_listen",
    "sk_common_release", "^sock_mmap", "^accept$", "kernel_accept", "^sock_do_ioctl", "^sock_ioctl",
    "^compat_sock_ioctl", "^nfnetlink_rcv_msg", "^rtnetlink_rcv_msg", "^netlink_dump",
    "^(sys_)?(socketpair|connect|ioctl)", "__do_fault", "do_page_fault", "^page_fault$", "__fput",
    "task_work_run", "exit_to_usermode", "smp_call_function", "tasklet_action", "tasklet_hi_action",
)

# "hung" extractor: these frames name the bucket (value replaces the frame when given) ...
HUNG_ANCHORS: tuple[tuple[str, str], ...] = (
    ("rtnl_lock", ""), ("synchronize_rcu", "synchronize_rcu"), ("synchronize_srcu", "synchronize_rcu"),
    ("synchronize_net", "synchronize_rcu"), ("synchronize_sched", "synchronize_rcu"),
)
# ... otherwise the first frame that contains none of these.
HUNG_SKIP: tuple[str, ...] = (
    "sched", "_lock", "_slowlock", "down", "rwsem", "completion", "kthread", "wait", "synchronize",
    "context_switch", "__switch_to", "cancel_delayed_work", "rcu_barrier",
)

# An RCU stall's guilty file is looked for from the first of these on (the stalled code under the timer interrupt).
RCU_STALL_ENTRIES: tuple[str, ...] = (
    "apic_timer_interrupt+0x", "sysvec_apic_timer_interrupt", "el1h_64_irq+0x", "el1_irq+0x", "Exception stack",
)

# Source files that are generic plumbing, never the guilty file.
GUILTY_FILE_IGNORES: tuple[str, ...] = (
    r"\.h$", r"^lib/.*", r"^virt/lib/.*", r"^mm/kasan/.*", r"^mm/kmsan/.*", r"^mm/kfence/.*",
    r"^kernel/kcov.c", r"^mm/sl.b.c", r"^mm/filemap.c", r"^mm/folio-compat.c", r"^mm/truncate.c",
    r"^mm/memory.c", r"^mm/percpu.*", r"^mm/vmalloc.c", r"^mm/page_alloc.c", r"^mm/mempool.c", r"^mm/util.c",
    r"^kernel/rcu/.*", r"^arch/.*/kernel/traps.c", r"^arch/.*/kernel/unwind.*.c", r"^arch/.*/mm/fault.c",
    r"^arch/.*/mm/physaddr.c", r"^arch/.*/kernel/stacktrace.c", r"^arch/.*/kernel/apic/apic.c",
    r"^arch/x86/entry/.*", r"^arch/arm64/kernel/entry.*.c", r"^arch/arm64/kernel/process\.c",
    r"^kernel/locking/.*", r"^kernel/panic.c", r"^kernel/printk/printk.*.c", r"^kernel/softirq.c",
    r"^kernel/kthread.c", r"^kernel/sched/.*.c", r"^kernel/stacktrace.c", r"^kernel/time/timer.c",
    r"^kernel/workqueue.c", r"^kernel/hung_task.c", r"^kernel/watchdog.c", r"^net/core/dev.c",
    r"^net/core/sock.c", r"^net/core/skbuff.c", r"^fs/proc/generic.c", r"^drivers/usb/core/urb.c",
    r"^arch/.*/lib/crc.*", r"^fs/xfs/xfs_message.c",
)
# Lines whose file reference says nothing about the culprit.
GUILTY_LINE_IGNORE = r"(hardirqs|softirqs)\s+last\s+(enabled|disabled)|^Register r\d+ information"
# A source file reference "fs/ext4/inode.c:3606".  It may only start where a run of file-name characters
# starts (the look-behind): tried from every position of a run, the search was cubic in the run's length.
FILENAME = r"(?<![a-zA-Z0-9_\-\./])([a-zA-Z0-9_\-\./]*[a-zA-Z0-9_\-]\.(?:c|h)):[0-9]+"

# Title normalisation, applied in order until stable (dynamic parts make bad dedup keys).
TITLE_REPLACEMENTS: tuple[tuple[str, str], ...] = (
    (r"([^a-zA-Z0-9])(?:0x)?[0-9a-f]{6,}", r"\1ADDR"),
    (r"([0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3})", "IP"),
    (r"(\.\w+)(:[0-9]+)+", r"\1:LINE"),
    # "func+0x1/0x2" -> "func"; a symbol only starts where its run of characters starts (linear search).
    (r"(?<![a-zA-Z0-9_.])([0-9_.]*+[a-zA-Z][a-zA-Z0-9_.]++)\+0x[0-9a-z]+/0x[0-9a-z]+", r"\1"),
    (r"CPU#[0-9]+", "CPU"),
    (r"(\W)(\d+)(\W|$)", r"\1NUM\3"),
    (r"(\d+){7,}", "NUM"),
)
MAX_TITLE_LEN = 120

# Console line prefixes: syslog/journal "Mon DD HH:MM:SS host kernel: ", "<N>" levels,
# "[  12.345678]" timestamps, "[Sat Nov 21 18:32:27 2026]" (dmesg -T) and
# CONFIG_PRINTK_CALLER's "[T123]"/"[C1]" (group "ctx").
LINE_PREFIX = (
    r"(?:\*\* [0-9]+ printk messages dropped \*\* )?"
    r"(?:(?:[A-Z][a-z]{2} [ 0-9][0-9] [0-9:]{8}|[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+(?:[+-][0-9:]+|Z)?) \S+ kernel: )?"
    r"(?:<[0-9]+>)?"
    r"(?P<ts>\[ *[0-9]+\.[0-9]+\]|\[[A-Z][a-z]{2} [A-Z][a-z]{2} [ 0-9][0-9] [0-9:]{8} [0-9]{4}\])?"
    r"(?:\[ *(?P<ctx>[CT][0-9]+)\])?"
)
# A frame the unwinder is not sure of: " ? foo+0x1/0x2" (but not interrupt markers).
QUESTIONABLE_FRAME = r"(?:\[<[0-9a-f]+>\])? \? "



_FLAGS = re.compile(r"^\(\?[aiLmsux]+\)")


def _split_any(pattern: str) -> Optional[list[str]]:
    """``pattern`` cut at its top-level ``.*`` (outside groups and classes), or None when it has
    a top-level alternation, spans lines, or has no such ``.*``."""
    parts, depth, cls, i, start = [], 0, False, 0, 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            if pattern[i + 1:i + 2] == "n":
                return None
            i += 2
            continue
        if cls:
            cls = ch != "]"
        elif ch == "[":
            cls = True
            i += pattern[i + 1:i + 2] == "]"
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            return None
        elif (ch == "." and depth == 0 and pattern[i + 1:i + 2] == "*"
              and pattern[i + 2:i + 3] not in ("?", "+")):
            parts.append(pattern[start:i])
            i += 2
            start = i
            continue
        i += 1
    parts.append(pattern[start:])
    return parts if len(parts) > 1 else None


def linear(pattern: str) -> str:
    """``HEAD.*A.*B`` rewritten so that a search is linear in the line's length.

    Searched as written, each occurrence of HEAD on a line rescans the rest of the line for A (and
    each A for B): quadratic in a line made of HEADs.  Here each gap may not run over another HEAD
    and stops at the first A, then at the first B (atomic, lazy): every character is looked at a
    bounded number of times.  A line still matches if HEAD is followed by A and then B with no other
    HEAD in between — the parts of a title come after the last marker before them.
    """
    flags = _FLAGS.match(pattern)
    prefix = flags.group(0) if flags else ""
    parts = _split_any(pattern[len(prefix):])
    if parts is None or not parts[0]:
        return pattern
    head = re.sub(r"(?<!\\)\((?!\?)", "(?:", parts[0])  # the look-ahead copy must not add groups
    gap = f"(?:(?!{head}).)*?"
    return prefix + parts[0] + "".join(f"(?>{gap}{part})" for part in parts[1:])


@dataclass(frozen=True)
class _FromFirstHead:
    """A multi-line regex ``HEAD(?:.*\\n)+?A(?:.*\\n)+?B`` tried at the first HEAD only, each
    ``(?:.*\\n)+?A`` committed to the first line with an A (atomic).

    If A then B do not follow the first HEAD, they follow no later HEAD either; searched as
    written, every HEAD (and every A) would rescan the rest of the text: quadratic."""

    head: "re.Pattern[str]"
    full: "re.Pattern[str]"

    @property
    def pattern(self) -> str:
        return self.full.pattern

    def search(self, text: str, pos: int = 0):
        first = self.head.search(text, pos)
        return None if first is None else self.full.match(text, first.start())


@functools.lru_cache(maxsize=None)
def rx(pattern: str, flags: int = 0):
    """Compile one of this table's regexes (once per process) so that searching it is linear:
    ``.*`` gaps are rewritten by ``linear``, multi-line patterns are tried at their first head."""
    next_lines = "(?:.*\\n)+?"
    head, *rest = pattern.split(next_lines)
    if head and rest and all(p.count("(") == p.count(")") for p in rest):
        full = head + "".join(f"(?>{next_lines}{part})" for part in rest)
        return _FromFirstHead(re.compile(linear(head), flags), re.compile(full, flags))
    return re.compile(linear(pattern), flags)
