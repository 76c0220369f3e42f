"""One C file from a workload: its project headers (common.h, net.h) inlined where they are
included, each once, so the program builds with nothing but gcc and the system headers."""
from __future__ import annotations

import re
from pathlib import Path

from harness.pins.workloads import HERE, WorkloadSpec

LOCAL_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"\s*$')


def _inline(path: Path, seen: set[str]) -> list[str]:
    out = []
    for line in path.read_text().splitlines():
        m = LOCAL_INCLUDE.match(line)
        if not m:
            out.append(line)
            continue
        name = m.group(1)
        if name in seen:
            continue
        seen.add(name)
        out += [f"/* ---- {name} (inlined) ---- */", *_inline(HERE / name, seen), f"/* ---- end of {name} ---- */"]
    return out


def build_line(spec: WorkloadSpec, output: str = "repro", source: str = "repro.c") -> list[str]:
    """The gcc command that builds the one file (static unless the workload links a system library)."""
    return ["gcc", "-O2", "-pthread", *(["-static"] if spec.static else []), "-o", output, source, *spec.libs]


def amalgamate(spec: WorkloadSpec, header: str) -> str:
    """repro.c: ``header`` (plain text, becomes the top comment), then the workload with its headers inlined."""
    comment = ["/*"] + [f" * {line}".rstrip() for line in header.replace("*/", "* /").splitlines()] + [" */"]
    body = _inline(HERE / spec.source, set())
    return "\n".join(comment + body) + "\n"
