"""Console/dmesg log -> crash reports, titled the way syzbot titles them.

``parse(text)`` finds every report the oops table (``harness.crash.oopses``) knows,
in logs with or without printk timestamps, with CONFIG_PRINTK_CALLER
prefixes (``[T123]``/``[C1]``: a report then only keeps its own task's or
CPU's lines), with syslog/journal/dmesg prefixes, or interleaved with user
output.  Each ``CrashReport`` has a title, alternative titles (dedup keys),
a type, whether (and why) the report looks corrupted, the guilty file, its
frames and its text.  ``dedup`` groups reports that are the same bug.
"""
from __future__ import annotations

import os.path
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Iterable, Optional

from harness.crash import oopses as table
from harness.crash.demangle import demangle
from harness.crash.oopses import STACK, Format, Oops, StackSpec, rx


@dataclass
class Frame:
    function: str
    offset: Optional[int]
    size: Optional[int]
    module: Optional[str]
    address: Optional[int]
    file: Optional[str] = None
    line: Optional[int] = None
    inlined: bool = False
    exact: bool = False  # the faulting instruction (RIP/PC line), not a return address


@dataclass
class CrashReport:
    title: str
    alt_titles: list[str]
    type: str
    corrupted: bool
    corrupted_reason: str
    guilty_file: Optional[str]
    frames: list[Frame]
    report: str
    start: int  # character offsets of the report in the parsed text
    end: int
    subtype: str = ""  # syzbot's finer type when it has one ("KASAN-USE-AFTER-FREE-WRITE")
    ours: bool = False  # a kind syzbot does not report


CORRUPTED_NO_FRAMES = "extracted no frames"
CORRUPTED_TRUNCATED = "report is cut in the middle of a stack trace"


@dataclass(frozen=True)
class _Header:
    start: int  # offset of the line in the text
    end: int
    index: int  # line number (0-based) of the line
    oops: Oops
    ctx: str  # "T123"/"C1" from CONFIG_PRINTK_CALLER, "" if none
    body: str  # the line without its console prefix


# ---------------------------------------------------------------- lines


def split_prefix(line: str) -> tuple[str, str]:
    """(caller context, message) of one console line, prefixes removed."""
    if line.endswith("\r"):
        line = line[:-1]
    m = rx(table.LINE_PREFIX).match(line)
    if m is None or m.end() == 0:
        return "", line
    body = line[m.end():]
    if (m.group("ts") or m.group("ctx")) and body.startswith(" "):
        body = body[1:]
    return m.group("ctx") or "", body


def _iter_lines(text: str, pos: int) -> Iterable[tuple[int, int]]:
    n = len(text)
    while pos < n:
        nl = text.find("\n", pos)
        end = n if nl == -1 else nl
        yield pos, end
        pos = end + 1


def _oops_for(body: str) -> Optional[Oops]:
    for oops in table.OOPSES:
        if oops.marker not in body:
            continue
        if oops.header is not None and not rx(oops.header).search(body):
            continue
        if any(rx(s).search(body) for s in oops.suppressions):
            continue
        return oops
    return None


def _anchor_probes(text: str) -> list[tuple[str, str]]:
    """(anchor, its rarest character in a sample of ``text``) for each of MARKER_ANCHORS; a text of
    one chunk or less is not worth counting (any character of the anchor will do)."""
    if len(text) <= table.MARKER_CHUNK:
        return [(a, a[0]) for a in table.MARKER_ANCHORS]
    slices, width = table.MARKER_SAMPLE
    step = len(text) // slices
    sample = text if step <= width else "".join(text[i:i + width] for i in range(0, len(text), step))
    counts = {c: sample.count(c) for c in set("".join(table.MARKER_ANCHORS))}
    return [(a, min(a, key=lambda c: (counts[c], c))) for a in table.MARKER_ANCHORS]


def _marker_lines(text: str) -> list[tuple[int, int]]:
    """(line start, offset of its first anchor) of every line that may hold a marker, in order.
    Linear: a chunk is passed over by at most one memchr and one str.find per anchor, and after a
    hit the search goes on from the next line."""
    first: dict[int, int] = {}
    n, chunk = len(text), table.MARKER_CHUNK
    for anchor, probe in _anchor_probes(text):
        pos = 0
        while pos < n:
            stop = min(n, pos + chunk + len(anchor) - 1)  # every occurrence starting in this chunk
            hit = text.find(anchor, pos, stop) if text.find(probe, pos, stop) != -1 else -1
            if hit == -1:
                pos += chunk
                continue
            start = text.rfind("\n", 0, hit) + 1
            if hit < first.get(start, n):
                first[start] = hit
            end = text.find("\n", hit)
            pos = n if end == -1 else end + 1
    return sorted(first.items())


def _clip(body: str, keep_from: int = 0) -> str:
    """A line cut to MAX_LINE_CHARS after ``keep_from`` (the kernel never prints longer lines;
    user-space lines can be megabytes of hex, and no regex needs more)."""
    return body[:keep_from + table.MAX_LINE_CHARS]


def _find_headers(text: str) -> list[_Header]:
    headers: list[_Header] = []
    line_no, counted_to = 0, 0
    for start, marker_at in _marker_lines(text):
        end = text.find("\n", marker_at)
        end = len(text) if end == -1 else end
        ctx, body = split_prefix(text[start:end])
        body = _clip(body, max(0, marker_at - start - (end - start - len(body))))
        oops = _oops_for(body)
        if oops is None:
            continue
        line_no += text.count("\n", counted_to, start)
        counted_to = start
        headers.append(_Header(start, end, line_no, oops, ctx, body))
    return headers


# ---------------------------------------------------------------- segmentation


def _matches_any(patterns: Iterable[str], line: str) -> bool:
    return any(rx(p).search(line) for p in patterns)


def _is_continuation(hdr: _Header, owner: Oops) -> bool:
    return _matches_any(table.CONTINUATIONS, hdr.body) or _matches_any(owner.absorbs, hdr.body)


@dataclass
class _Collected:
    lines: list[str]
    end: int
    absorbed: set[int] = field(default_factory=set)
    cut: bool = False  # stopped by a bound, not by the report's end
    title_lines: Optional[int] = None  # the title comes from this many first lines (None: all)

    def keep(self, body: str, head: _Header) -> None:
        """Append a line of the report, noting where the part its title comes from ends."""
        if self.title_lines is None and _stops_title(body, head, len(self.lines)):
            self.title_lines = len(self.lines)
        self.lines.append(body)


def _stops_title(body: str, head: _Header, seen: int) -> bool:
    """Whether the title must come from the ``seen`` lines before ``body`` (syzkaller's report end)."""
    if not head.ctx and any(msg in body for msg in table.INFO_WITH_STACK):
        return True
    least = next((n for marker, n in table.TITLE_STOP_MIN_LINES_BY_HEADER if marker in head.body),
                 table.TITLE_STOP_MIN_LINES)
    return seen >= least and _matches_any(table.TITLE_STOPS, body)


@dataclass
class _Budget:
    """Lines and characters a report may still look at."""

    lines: int
    chars: int

    def take(self, chars: int) -> bool:
        self.lines -= 1
        self.chars -= chars + 1
        return self.lines >= 0 and self.chars >= 0


def _collect(text: str, head: _Header, header_at: dict[int, _Header]) -> _Collected:
    """The lines of the report that starts at ``head``."""
    out = _Collected([head.body], head.end)
    ctx, oops = head.ctx, head.oops
    pending: list[str] = []  # lines after an end marker, kept if a continuation follows
    ended, since_end, cpu_traceback = _ends(oops, head.body, first=True), 0, False
    size = len(head.body)
    # Every line looked at counts, other callers' too: a report never scans more than this.
    budget = _Budget(lines=table.MAX_SCAN_LINES, chars=table.MAX_SCAN_CHARS)
    for start, end in _iter_lines(text, head.end + 1):
        if len(out.lines) >= oops.max_lines or size >= table.MAX_REPORT_CHARS or not budget.take(end - start):
            out.cut = True
            break
        lctx, body = split_prefix(text[start:end])
        body = _clip(body)
        hdr = header_at.get(start)
        same_stream = not ctx or lctx == ctx or (cpu_traceback and lctx.startswith("C"))
        if hdr is not None and (not ctx or hdr.ctx == ctx):
            if _is_continuation(hdr, oops):
                if ended and since_end > table.CONTINUATION_WINDOW:
                    break
                out.absorbed.add(start)
                out.lines.extend(pending)
                pending, ended = [], False
                out.keep(body, head)
                out.end = end
                continue
            if hdr.oops.interrupts:
                break
            continue  # a one-line report of its own (e.g. EXT4-fs error): not part of this one
        if ended:
            since_end += 1
            if since_end > table.CONTINUATION_WINDOW:
                break
            if same_stream:
                pending.append(body)
            continue
        if not same_stream:
            continue
        out.keep(body, head)
        size += len(body) + 1
        out.end = end
        if table.CPU_TRACEBACK in body:
            cpu_traceback = True
        if _ends(oops, body):
            ended, since_end = True, 0
    return out


def _ends(oops: Oops, body: str, first: bool = False) -> bool:
    return not first and _matches_any(oops.end, body) or (
        not first and rx(r"---\[ end Kernel panic").search(body) is not None)


def _yields(head: _Header, headers: list[_Header], i: int) -> bool:
    if not head.oops.yields_to:
        return False
    for later in headers[i + 1:]:
        if later.index - head.index > table.YIELD_WINDOW:
            return False
        if (not head.ctx or later.ctx == head.ctx) and _matches_any(head.oops.yields_to, later.body):
            return True
    return False


def parse(text: str) -> list[CrashReport]:
    """Every crash report in a console log, in order of appearance: syzbot's kinds first, then
    our own (file-system and I/O errors, page dumps), so that the first report is syzbot's."""
    headers = _find_headers(text)
    header_at = {h.start: h for h in headers}
    absorbed: set[int] = set()
    reports = []
    text_end = len(text.rstrip("\n"))
    for i, head in enumerate(headers):
        if head.start in absorbed or _yields(head, headers, i):
            continue
        got = _collect(text, head, header_at)
        absorbed |= got.absorbed
        truncated = got.cut or got.end >= text_end
        titled = None if got.title_lines is None else "\n".join(got.lines[:got.title_lines]) + "\n"
        reports.append(_build(head, "\n".join(got.lines) + "\n", head.start, got.end, truncated, titled))
    return sorted(reports, key=lambda r: r.ours)


def parse_bytes(data: bytes) -> list[CrashReport]:
    """``parse`` for raw console bytes: undecodable bytes become U+FFFD, NULs are dropped."""
    return parse(data.decode("utf-8", errors="replace").replace("\x00", ""))


# ---------------------------------------------------------------- titles


def _build(head: _Header, report: str, start: int, end: int, truncated: bool = False,
           titled: Optional[str] = None) -> CrashReport:
    """``titled``: the first part of ``report`` that the title comes from, when not all of it."""
    title, alts, reason, fmt = describe(titled or report, head.oops)
    if not reason:
        reason = _corruption(title, titled or report, fmt)
    if not reason and truncated and _ends_mid_trace(report, fmt):
        reason = CORRUPTED_TRUNCATED
    kind = fmt.type if fmt is not None and fmt.type else head.oops.type
    return CrashReport(
        title=sanitize_title(title),
        alt_titles=_unique(sanitize_title(a) for a in alts),
        type=kind,
        subtype=_subtype(sanitize_title(title), kind),
        ours=head.oops.ours,
        corrupted=bool(reason),
        corrupted_reason=reason,
        guilty_file=guilty_file(report, title),
        frames=report_frames(report, head.oops),
        report=report,
        start=start,
        end=end,
    )


def _format(fmt: str, args: list[str]) -> str:
    try:
        return fmt.format("", *args)
    except IndexError:
        return fmt.format("", *args, *(["corrupted"] * 8))


def describe(report: str, oops: Oops) -> tuple[str, list[str], str, Optional[Format]]:
    """(title, alternative titles, corruption reason, format used) of a report."""
    first_at = len(report) + 1
    title, alts, reason, used = "", [], "", None
    matched_title = False
    for f in oops.formats:
        m = rx(f.title).search(report)
        if m is None or m.start() > first_at or (m.start() == first_at and title):
            continue
        if m.start() < first_at:
            title, alts, used, first_at = "", [], None, m.start()
        matched_title = True
        if f.report is not None:
            m = rx(f.report).search(report)
            if m is None:
                continue
        prefix = [g or "" for g in m.groups()]
        reason = ""
        frames: list[tuple[str, str]] = []
        if f.stack is not None:
            frames, ok = _extract_stack(f.stack, report[m.start():])
            if not ok:
                reason = CORRUPTED_NO_FRAMES
        title = _format(f.fmt, prefix + [c for c, _ in frames])
        alts = [_format(a, prefix + [c for c, _ in frames]) for a in f.alt]
        for variant in _stripped_variants(frames):
            alt = _format(f.fmt, prefix + variant)
            if alt != title:
                alts.append(alt)
            alts.extend(_format(a, prefix + variant) for a in f.alt)
        alts = _unique(alts)
        used = f
    if not title:
        # syzbot keeps the raw first line as the title; unlike syzbot we also say it is mangled.
        reason = "matched title but not report regexp" if matched_title else "matched no title format"
        pos = report.find(oops.marker)
        title = report[max(pos, 0):].split("\n", 1)[0]
    if not reason and used is not None and used.corrupted:
        reason = "report format is marked as corrupted"
    return title, alts, reason, used


def _stripped_variants(frames: list[tuple[str, str]]) -> list[list[str]]:
    variants = [[raw for _, raw in frames]]
    for prefix in table.STRIP_FRAME_PREFIXES:
        stripped = [raw[len(prefix):] if raw.startswith(prefix) else raw for _, raw in frames]
        if any(raw.startswith(prefix) for _, raw in frames):
            variants.append(stripped)
    return variants


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def sanitize_title(title: str) -> str:
    for pattern, repl in table.TITLE_REPLACEMENTS:
        while True:
            new = rx(pattern).sub(repl, title)
            if new == title:
                break
            title = new
    out, prev = [], " "
    for ch in title[:table.MAX_TITLE_LEN]:
        if ch == "\t":
            ch = " "
        elif ch < " " or ch >= "\x7f":
            continue
        if ch == " " and prev == " ":
            continue
        out.append(ch)
        prev = ch
    return "".join(out).strip()


# ---------------------------------------------------------------- the guilty frame


@lru_cache(maxsize=None)
def _skip_re(skip: tuple[str, ...]):
    return rx("|".join(table.SKIP_FRAMES + skip))


def _strip_frame(frame: str) -> str:
    best = frame
    for prefix in table.STRIP_FRAME_PREFIXES:
        if frame.startswith(prefix) and len(frame) - len(prefix) < len(best):
            best = frame[len(prefix):]
    return best


def _extract_stack(spec: StackSpec, text: str) -> tuple[list[tuple[str, str]], bool]:
    skip = _skip_re(spec.skip)
    frames, ok = _extract_parts(spec.parts, spec.extractor, text, skip)
    for parts in (spec.parts2, *spec.more):
        if ok:
            break
        if parts:
            frames, ok = _extract_parts(parts, spec.extractor, text, skip)
    return frames, ok


def _add_frames(raw: list[str], match, skip) -> None:
    if match is None:
        return
    for group in match.groups():
        if group is None:
            continue
        name = demangle(group)  # syzkaller titles Rust/C++ frames by their demangled names
        if not skip.search(name):
            raw.append(name)


def _extract_parts(parts: tuple[str, ...], extractor: str, text: str, skip) -> tuple[list[tuple[str, str]], bool]:
    lines = text.split("\n")
    li = 0
    raw: list[str] = []
    results: list[tuple[str, str]] = []
    ok, traces, idx = True, 0, 0
    corrupted_lines = [rx(p) for p in table.CORRUPTED_LINES]
    stack_starts = [rx(p) for p in table.STACK_STARTS]
    frame_re = rx(table.FRAME_LINE)
    unreliable = rx(table.UNRELIABLE_FRAME)
    while True:
        if idx == len(parts) or (parts[idx] == STACK and traces > 0):
            key = _pick(raw, extractor)
            if key is None:
                key, ok = ("corrupted", "corrupted"), False
            results.append(key)
            raw = []
        if idx == len(parts):
            break
        is_stack = parts[idx] == STACK
        traces += is_stack
        nxt = rx(parts[idx + 1]) if is_stack and idx + 1 < len(parts) else None
        pat = None if is_stack else rx(parts[idx])
        while li < len(lines):
            ln = lines[li]
            li += 1
            if any(c.search(ln) for c in corrupted_lines):
                ok = False
                break
            if pat is not None:  # one line that advances the position, maybe naming a frame
                m = pat.search(ln)
                if m is not None:
                    _add_frames(raw, m, skip)
                    break
                continue
            if any(s.search(ln) for s in stack_starts):
                break
            m = nxt.search(ln) if nxt is not None else None
            if m is not None:  # the part after the stack matched: the stack is over
                _add_frames(raw, m, skip)
                idx += 1
                break
            if not unreliable.search(ln):
                _add_frames(raw, frame_re.search(ln), skip)
        idx += 1
    return results, ok


def _pick(raw: list[str], extractor: str) -> Optional[tuple[str, str]]:
    if not raw:
        return None
    stripped = [_strip_frame(f) for f in raw]
    i, name = _EXTRACTORS[extractor](stripped)
    if i < 0:
        return None
    return name, raw[i]


def _first(frames: list[str]) -> tuple[int, str]:
    return 0, frames[0]


def _stall(frames: list[str]) -> tuple[int, str]:
    prev_i = 0
    for i, frame in enumerate(frames):
        if _matches_any(table.STALL_ANCHORS, frame):
            if "smp_call_function" in frame:
                return i, "smp_call_function"
            return prev_i, frames[prev_i]
        prev_i = i
    return -1, ""


def _hung(frames: list[str]) -> tuple[int, str]:
    for i, frame in enumerate(frames):
        for anchor, replacement in table.HUNG_ANCHORS:
            if anchor in frame:
                return i, replacement or frame
    for i, frame in enumerate(frames):
        if not any(word in frame for word in table.HUNG_SKIP):
            return i, frame
    return -1, ""


_EXTRACTORS = {"first": _first, "stall": _stall, "hung": _hung}


# ---------------------------------------------------------------- corruption, guilty file, frames


def _subtype(title: str, kind: str) -> str:
    for prefix, subtype in table.SUBTYPES:
        if title.startswith(prefix):
            return subtype
    return ""


def _ends_mid_trace(report: str, fmt: Optional[Format]) -> bool:
    """The log (or the report's bound) ended while a stack trace was being printed."""
    if fmt is None or fmt.no_stack_trace:
        return False
    lines = report.rstrip("\n").split("\n")
    last = lines[-1]
    if len(lines) < 2 or rx(table.STACK_END).search(last) or not rx(table.FRAME_LINE).search(last):
        return False
    return any(rx(p).search(line) for line in lines for p in table.STACK_STARTS)


def _corruption(title: str, report: str, fmt: Optional[Format]) -> str:
    if _matches_any(table.CORRUPTED_TITLES, title):
        return "title matches corrupted regexp"
    if fmt is None or fmt.no_stack_trace:
        return ""
    starts = [rx(p) for p in table.STACK_STARTS]
    optional = {rx(p) for p in table.OPTIONAL_STACK_STARTS}
    frame_re = rx(table.FRAME_LINE)
    has_stack = False
    for key in starts:
        m = key.search(report)
        if m is None:
            continue
        lines = report[m.start():].split("\n")
        if len(lines) < 4:
            return "call trace is missed"
        found = False
        for ln in lines[1:16]:
            if any(k.search(ln) for k in starts):
                break
            if "(stack is not available)" in ln or frame_re.search(ln):
                found = has_stack = True
                break
        if not found and key not in optional:
            return "no frames in a stack trace"
    return "" if has_stack else "no stack trace in report"


def guilty_file(report: str, title: str = "") -> Optional[str]:
    """The first source file in the report that is not generic plumbing."""
    if title.startswith("INFO: rcu detected stall"):
        for anchor in table.RCU_STALL_ENTRIES:
            pos = report.find(anchor)
            if pos != -1:
                found = _guilty_in(report[pos:])
                if found:
                    return found
    return _guilty_in(report)


def _source_files(lines: list[str]):
    """(line index, file, is plumbing) for each line that names a source file."""
    ignores = [rx(p) for p in table.GUILTY_FILE_IGNORES]
    line_ignore = rx(table.GUILTY_LINE_IGNORE)
    name_re = rx(table.FILENAME)
    for i, line in enumerate(lines):
        m = name_re.search(line)
        if m is not None:
            name = m.group(1)
            yield i, name, any(r.search(name) for r in ignores) or line_ignore.search(line) is not None


def _guilty_in(report: str) -> Optional[str]:
    lines = report.split("\n")
    guilty: Optional[str] = None
    rest = len(lines)
    for i, name, plumbing in _source_files(lines):
        guilty = guilty or name
        if not plumbing:
            guilty, rest = os.path.normpath(name), i + 1
            break
    if rest == len(lines) or guilty is None:
        return guilty
    deepest = os.path.dirname(guilty)
    deeper = rx(r"^/[a-zA-Z0-9_\-\./]+/[a-zA-Z0-9_\-]+\.(c|h)$")
    for _, name, plumbing in _source_files(lines[rest:]):  # a deeper file of the same directory is more specific
        clean = os.path.normpath(name)
        if not plumbing and clean.startswith(deepest) and deeper.match(clean[len(deepest):]):
            guilty, deepest = clean, os.path.dirname(clean)
    return guilty


_FRAME_LINE = (
    r"^\s*(?:(?P<rip>RIP|IP|NIP|pc|PC is at)\s*:?\s*(?:[0-9a-f]{4}:)?\s*)?"
    r"(?:\[<?(?:0x)?(?P<addr>[0-9a-f]+)>?\]\s*)?(?P<q>\?\s+)?"
    r"(?P<func>[A-Za-z_][A-Za-z0-9_.$]*)\+0x(?P<off>[0-9a-f]+)/0x(?P<size>[0-9a-f]+)"
    r"(?:\s+\[(?P<mod>[A-Za-z0-9_\-]+)(?:\s+[0-9a-f]+)?\])?"
    r"(?:\s+(?P<file>[A-Za-z0-9_\-./]+\.[chSs]):(?P<line>[0-9]+))?"
    # arm64 6.13+ (dump_backtrace_entry): where the frame came from, pc/lr/task/caller/unknown, then F (fgraph)
    # and K (kretprobe) flags: " (P)", " (L)", " (PF)", " (K)".
    r"(?:\s+\((?P<mark>(?=[CTPLUFK])[CTPLU]?F?K?)\))?"
)
_INLINE_LINE = r"^(?:\s+|(?:RIP|IP|NIP|pc|PC is at)\s*:?\s*(?:[0-9a-f]{4}:)?)(?P<func>[A-Za-z_][A-Za-z0-9_.$]*) (?P<file>[A-Za-z0-9_\-./]+\.[chSs]):(?P<line>[0-9]+) \[inline\]"
_ADDR_LINE = r"^\s*(?:(?P<rip>RIP|IP)\s*:?\s*(?:[0-9a-f]{4}:)?\s*)?(?:\[<(?P<addr>[0-9a-f]{8,})>\]|0x(?P<addr2>[0-9a-f]{8,}))\s*$"


def parse_frame_line(line: str) -> Optional[Frame]:
    """The frame one report line shows (``func+0x1/0x2 [mod]``, inline, or a bare address)."""
    m = rx(_FRAME_LINE).search(line)
    if m is not None:
        if m.group("q"):
            return None
        return Frame(
            function=demangle(m.group("func")), offset=int(m.group("off"), 16), size=int(m.group("size"), 16),
            module=m.group("mod"), address=int(m.group("addr"), 16) if m.group("addr") else None,
            file=m.group("file"), line=int(m.group("line")) if m.group("line") else None,
            exact=bool(m.group("rip")) or (m.group("mark") or "").startswith("P"))
    m = rx(_INLINE_LINE).search(line)
    if m is not None:
        return Frame(function=m.group("func"), offset=None, size=None, module=None, address=None,
                     file=m.group("file"), line=int(m.group("line")), inlined=True)
    m = rx(_ADDR_LINE).search(line)
    if m is not None:
        return Frame(function="", offset=None, size=None, module=None,
                     address=int(m.group("addr") or m.group("addr2"), 16), exact=bool(m.group("rip")))
    return None


def report_frames(report: str, oops: Optional[Oops] = None) -> list[Frame]:
    """The frames of a report, up to its first end marker (the register dump repeats RIP)."""
    frames = []
    ends = oops.end if oops is not None else (r"---\[ end trace",)
    for i, line in enumerate(report.split("\n")):
        if i and _matches_any(ends, line):
            break
        if i == 0:
            continue
        frame = parse_frame_line(line)
        if frame is not None:
            frames.append(frame)
    return frames


# ---------------------------------------------------------------- dedup


def dedup(reports: list[CrashReport]) -> list[tuple[CrashReport, int]]:
    """Group reports of the same bug (titles or alternative titles overlap), first seen first."""
    groups: list[tuple[set[str], CrashReport, int]] = []
    for rep in reports:
        keys = {rep.title, *rep.alt_titles}
        hits = [g for g in groups if g[0] & keys]
        if not hits:
            groups.append((keys, rep, 1))
            continue
        first = hits[0]
        merged_keys = set(keys).union(*(g[0] for g in hits))
        merged = (merged_keys, first[1], sum(g[2] for g in hits) + 1)
        groups = [merged if g is first else g for g in groups if g is first or g not in hits]
    return [(rep, count) for _, rep, count in groups]
