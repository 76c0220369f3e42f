"""Outcomes of a pin-workload run and what each kernel is expected to do.

``classify`` turns a WorkloadRun + its crash reports into an Outcome;
``expectation`` looks the cell up in data/oracle.tsv; ``verdict`` compares.
"""
from __future__ import annotations

import errno as errno_mod
import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from harness.crash.oopses import (BUG, EVENT_TYPES, FS_ERROR, HANG, IO_ERROR, KASAN, KCSAN, KFENCE, KMSAN,
                                  LOCKDEP, MEMORY_LEAK, PANIC, REBOOT, SYZ_FAILURE, UBSAN, WARNING)

TABLE = Path(__file__).resolve().parent / "data" / "oracle.tsv"

# errno numbers with two names: the one kernel developers say wins.
ERRNO_PREFERRED = {errno_mod.EOPNOTSUPP: "EOPNOTSUPP", errno_mod.EAGAIN: "EAGAIN", errno_mod.EDEADLK: "EDEADLK"}


def errno_name(num: int) -> str:
    return ERRNO_PREFERRED.get(num) or errno_mod.errorcode.get(num, str(num))

# Each type the crash parser gives is a crash, a warning or an event for a pin run (a unit test checks that
# every type is in exactly one of these).  An unexpected reboot and a KCSAN data race are crashes; lockdep,
# kmemleak, file-system/I-O errors and the fuzzer's own failures are warnings, as a WARNING is; an OOM kill
# is an event: listed in reports.txt, no facet of the outcome.
CRASH_TYPES = frozenset({BUG, PANIC, KASAN, KFENCE, KMSAN, KCSAN, UBSAN, HANG, REBOOT})
WARNING_TYPES = frozenset({WARNING, LOCKDEP, MEMORY_LEAK, FS_ERROR, IO_ERROR, SYZ_FAILURE})


def is_event(report) -> bool:
    """An event such as an OOM kill: no crash, no warning."""
    return str(report.type).upper() in EVENT_TYPES


@dataclass(frozen=True)
class Outcome:
    """What one run did. ``kind`` is the headline by severity; the rest are facets."""

    kind: str  # PROTECTED | CLEAN | WARNING | CRASH | DATA-LOSS | PIN-LEAK
    pin_errno: int = 0
    titles: tuple[str, ...] = ()
    crash_titles: tuple[str, ...] = ()
    lost_pages: int = 0
    device_pages: int = 0
    pin_leak: int = 0

    @property
    def facets(self) -> list[str]:
        out = []
        if self.pin_errno:
            out.append(f"PROTECTED({errno_name(self.pin_errno)})")
        out += [f"CRASH({t})" for t in self.crash_titles]
        out += [f"WARNING({t})" for t in self.titles if t not in self.crash_titles]
        if self.lost_pages:
            out.append(f"DATA-LOSS({self.lost_pages})")
        if self.pin_leak:
            out.append(f"PIN-LEAK({self.pin_leak})")
        return out or ["CLEAN"]

    def __str__(self) -> str:
        return "+".join(self.facets)


def classify(run, reports: Sequence) -> Outcome:
    """Outcome of a WorkloadRun given the crash reports parsed from its console."""
    titles = tuple(dict.fromkeys(r.title for r in reports if not is_event(r)))
    crashes = tuple(dict.fromkeys(r.title for r in reports if str(r.type).upper() in CRASH_TYPES))
    pins = run.pins or {}
    leak = 0
    if pins.get("before") and pins.get("after"):
        acq = pins["after"].get("nr_foll_pin_acquired", 0) - pins["before"].get("nr_foll_pin_acquired", 0)
        rel = pins["after"].get("nr_foll_pin_released", 0) - pins["before"].get("nr_foll_pin_released", 0)
        leak = max(0, acq - rel)
    lost = run.lost_pages
    if crashes:
        kind = "CRASH"
    elif leak:
        kind = "PIN-LEAK"
    elif lost:
        kind = "DATA-LOSS"
    elif titles:
        kind = "WARNING"
    elif run.pin_errno:
        kind = "PROTECTED"
    else:
        kind = "CLEAN"
    return Outcome(kind, run.pin_errno, titles, crashes, lost, run.device_pages, leak)


# --------------------------------------------------------------------------- the table

@dataclass(frozen=True)
class Expectation:
    kernel: str
    workload: str
    fs: str
    stressors: str
    expect: str
    bug: bool
    why: str
    facets: tuple[tuple[str, str], ...] = field(default=())  # (KIND, arg)


def _facets(expect: str) -> tuple[tuple[str, str], ...]:
    out = []
    for part in re.findall(r"[A-Z-]+(?:\([^)]*\))?", expect):
        m = re.fullmatch(r"([A-Z-]+)(?:\(([^)]*)\))?", part)
        out.append((m.group(1), m.group(2) or ""))
    return tuple(out)


def load(path: Path = TABLE) -> list[Expectation]:
    rows = []
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        cols = line.split("\t")
        if len(cols) != 7:
            raise ValueError(f"{path}: a row needs 7 tab-separated columns: {line!r}")
        k, w, fs, st, exp, bug, why = cols
        rows.append(Expectation(k, w, fs, st, exp, bug == "yes", why, _facets(exp)))
    return rows


def _version_matches(rule: str, version: tuple[int, ...]) -> bool:
    if rule == "*":
        return True
    m = re.fullmatch(r"(<=|>=|<|>|==)?(\d+(?:\.\d+)*)", rule)
    if not m:
        raise ValueError(f"bad kernel rule {rule!r}")
    op, want = m.group(1) or "==", tuple(int(x) for x in m.group(2).split("."))
    v = version[: len(want)] if op == "==" else version
    return {"<": v < want, "<=": v <= want, ">": v > want, ">=": v >= want, "==": v == want}[op]


def kernel_matches(rule: str, version: tuple[int, ...], config: Optional[dict] = None,
                   arch: str = "x86_64") -> bool:
    """A kernel rule: a version rule, then optional conditions, e.g. "<6.5 !LRU_GEN_ENABLED arch=arm64"
    (NAME: CONFIG_NAME is y or m; !NAME: it is not; unknown config matches neither; arch=A: the guest
    architecture is A; a rule without arch= holds on every architecture)."""
    words = rule.split()
    if not _version_matches(words[0], version):
        return False
    for cond in words[1:]:
        if cond.startswith("arch="):
            if cond[len("arch="):] != arch:
                return False
            continue
        neg = cond.startswith("!")
        name = "CONFIG_" + cond.lstrip("!").removeprefix("CONFIG_")
        if config is None or not config:
            return False
        if (config.get(name) in ("y", "m")) == neg:
            return False
    return True


def expectation(version: tuple[int, ...], workload: str, fs: str, stressors: Sequence[str],
                table: Optional[list[Expectation]] = None, config: Optional[dict] = None,
                arch: str = "x86_64") -> Optional[Expectation]:
    st = "+".join(sorted(stressors))
    for row in table if table is not None else load():
        row_st = "+".join(sorted(row.stressors.split("+"))) if row.stressors != "*" else "*"
        if (kernel_matches(row.kernel, version, config, arch) and fnmatch.fnmatchcase(workload, row.workload)
                and fnmatch.fnmatchcase(fs, row.fs) and (row_st == "*" or row_st == st)):
            return row
    return None


@dataclass(frozen=True)
class Verdict:
    ok: bool  # the outcome matches the expectation
    status: str  # EXPECTED | KNOWN-BUG | UNEXPECTED-ALLOW | UNEXPECTED-REFUSE | UNEXPECTED | FIXED? | NO-ORACLE
    detail: str


def verdict(outcome: Outcome, exp: Optional[Expectation]) -> Verdict:
    if exp is None:
        return Verdict(False, "NO-ORACLE", f"no oracle row; observed {outcome}")
    want = dict(exp.facets)
    if "PROTECTED" in want and not outcome.pin_errno:
        return Verdict(False, "UNEXPECTED-ALLOW", f"expected {exp.expect}, the pin was allowed: {outcome}")
    if "PROTECTED" not in want and outcome.pin_errno:
        return Verdict(False, "UNEXPECTED-REFUSE", f"expected {exp.expect}, the pin was refused: {outcome}")
    problems = []
    if "PROTECTED" in want and want["PROTECTED"]:
        if getattr(errno_mod, want["PROTECTED"], None) != outcome.pin_errno:
            problems.append(f"refused with {errno_name(outcome.pin_errno)}, expected {want['PROTECTED']}")
    if "WARNING" in want and want["WARNING"] not in outcome.titles:
        problems.append(f"no {want['WARNING']!r}")
    if "CRASH" in want and want["CRASH"] not in outcome.crash_titles:
        problems.append(f"no crash {want['CRASH']!r}")
    if "DATA-LOSS" in want:
        arg = want["DATA-LOSS"]
        if arg == "all" and (outcome.lost_pages == 0 or outcome.lost_pages < outcome.device_pages):
            problems.append(f"lost {outcome.lost_pages} of {outcome.device_pages} pages, expected all")
        elif arg in ("some", "") and outcome.lost_pages == 0:
            problems.append("no data lost")
        elif arg.isdigit() and outcome.lost_pages != int(arg):
            problems.append(f"lost {outcome.lost_pages} pages, expected {arg}")
    if set(want) <= {"CLEAN", "PROTECTED"}:
        if outcome.titles or outcome.lost_pages or outcome.pin_leak:
            problems.append(f"expected {exp.expect}")
    elif "DATA-LOSS" not in want and outcome.lost_pages:
        problems.append(f"unexpected loss of {outcome.lost_pages} pages")
    if outcome.pin_leak and "PIN-LEAK" not in want:
        problems.append(f"pin leak of {outcome.pin_leak}")
    if problems:
        return Verdict(False, "UNEXPECTED", f"{outcome}: " + "; ".join(problems))
    return Verdict(True, "KNOWN-BUG" if exp.bug else "EXPECTED", str(outcome))
