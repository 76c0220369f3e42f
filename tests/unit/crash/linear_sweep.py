"""Every regex of harness/crash/ searched in 1 MB lines of its worst characters.

Run as a child process by test_console_linear.py (``python linear_sweep.py``): prints one JSON
line per (pattern, line kind) with where the search matched, so that a regex that backtracks
super-linearly shows up as a child that never finishes rather than as a slow test suite.
"""
from __future__ import annotations

import dataclasses
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from harness.crash import console, oopses, symbolize  # noqa: E402

MB = 1_000_000
# Characters that keep a backtracking engine busy: hex blobs, file-name runs, frames, prefixes...
ALPHABETS = {
    "hex": "0123456789abcdef",
    "file-name": "a/b_c-d.e",
    "markers": "WARNING: BUG: INFO: at fs/a.c:1 f+0x1/0x2 [<ffffffff81000000>] (f) from [ T1] \t",
}
NOT_REGEXES = ("marker", "fmt", "alt")  # Oops/Format fields that are literal text or title templates


def patterns() -> set[str]:
    """The regex strings of the oops table and of the modules that apply it."""
    found: set[str] = set()

    def walk(obj) -> None:
        if isinstance(obj, str):
            try:
                re.compile(obj)
            except re.error:
                return
            found.add(obj)
        elif isinstance(obj, re.Pattern):
            found.add(obj.pattern)
        elif isinstance(obj, (tuple, list)):
            for item in obj:
                walk(item)
        elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            for f in dataclasses.fields(obj):
                if f.name not in NOT_REGEXES:
                    walk(getattr(obj, f.name))

    for module in (oopses, console, symbolize):
        for name, value in vars(module).items():
            if name.lstrip("_").isupper():
                walk(value)
    return found


def literals(pattern: str) -> str:
    """The literal characters of ``pattern`` in order: a line made of them matches its parts over and over."""
    try:
        parsed = re._parser.parse(oopses.linear(pattern))  # type: ignore[attr-defined]
    except re.error:
        return ""
    out: list[str] = []

    def walk(items) -> None:
        for op, arg in items:
            name = str(op)
            if name == "LITERAL":
                out.append(chr(arg))
            elif name in ("SUBPATTERN",):
                walk(arg[-1])
            elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
                walk(arg[-1])
            elif name in ("ATOMIC_GROUP",):
                walk(arg)
            elif name == "BRANCH":
                for branch in arg[1]:
                    walk(branch)
            elif name == "IN":
                out.append("a")

    walk(parsed)
    return "".join(out)


def lines(pattern: str) -> dict[str, str]:
    kinds = dict(ALPHABETS)
    own = literals(pattern)
    if own:
        kinds["own literals"] = own + " "
        kinds["own literals, no gaps"] = own
        head = own[:max(1, len(own) // 2)]
        kinds["own head, no tail"] = head + " "
    return {kind: (seed * (MB // len(seed) + 1))[:MB] for kind, seed in kinds.items()}


def main() -> None:
    for pattern in sorted(patterns()):
        compiled = oopses.rx(pattern)
        for kind, line in lines(pattern).items():
            m = compiled.search(line)
            print(json.dumps({"pattern": pattern, "kind": kind, "span": list(m.span()) if m else None}), flush=True)


if __name__ == "__main__":
    main()
