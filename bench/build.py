#!/usr/bin/env python3
"""Kernel build times for a fragment set (default base+pins), wall and CPU seconds:

  cold         a fresh O= directory and an empty ccache (a private CCACHE_DIR)
  warm-ccache  the O= directory wiped again, same path, the ccache that "cold" filled
  incremental  after a change to one file (mm/gup.c): its object is removed from O=
               and recompiled for real (CCACHE_RECACHE), vmlinux/bzImage relinked

The source tree is only read: instead of touching mm/gup.c the bench deletes
O=/mm/gup.o, which makes make do the same work. Run it niced on a quiet machine:

    nice -n 19 python bench/build.py --tree ~/.cache/pinharness/src/linux-source-6.1 [--jobs 2]
    python bench/build.py --tree T --only incremental --out <an existing O= build of T>
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.kbuild import build as build_mod  # noqa: E402
from harness.errors import HarnessError  # noqa: E402
from harness.vm.host import Paths  # noqa: E402

KINDS = ("cold", "warm-ccache", "incremental")
CHANGED_OBJECT = "mm/gup.o"


def ccache_stats(ccache_dir: Path | None) -> dict[str, int]:
    """ccache's counters (hits and misses) for one cache directory."""
    exe = shutil.which("ccache")
    if exe is None:
        return {}
    env_args = ["env", f"CCACHE_DIR={ccache_dir}"] if ccache_dir else []
    out = subprocess.run(env_args + [exe, "--print-stats"], capture_output=True, text=True, timeout=60).stdout
    stats = {}
    for line in out.splitlines():
        key, _, value = line.partition("\t")
        if value.strip().isdigit():
            stats[key] = int(value)
    return stats


def hits(before: dict, after: dict) -> str:
    if not after:
        return "no ccache"
    d = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    h = d.get("direct_cache_hit", 0) + d.get("preprocessed_cache_hit", 0)
    m = d.get("cache_miss", 0)
    recache = f", {d['recache']} recompiled (CCACHE_RECACHE)" if d.get("recache") else ""
    return f"ccache {h} hits / {m} misses{recache}"


def measure(kind: str, req: build_mod.BuildRequest, ccache_dir: Path | None) -> str:
    before = ccache_stats(ccache_dir)
    res = build_mod.build(req, log=lambda s: print(f"  {s}", file=sys.stderr, flush=True))
    after = ccache_stats(ccache_dir)
    return f"{kind:12s} {res.seconds:8.0f} s wall {res.cpu_seconds:8.0f} CPU-s   {hits(before, after)}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tree", type=Path, required=True, help="kernel source tree (read only)")
    ap.add_argument("--config", default="base,pins", help="fragments (default base,pins)")
    ap.add_argument("--jobs", type=int, default=0, help="make -j (default: CPUs)")
    ap.add_argument("--only", default=",".join(KINDS), help=f"comma-separated subset of {','.join(KINDS)}")
    ap.add_argument("--out", type=Path, help="O= directory (default: a fresh one in the cache; wiped for cold/warm)")
    args = ap.parse_args()
    kinds = [k for k in args.only.split(",") if k]
    unknown = set(kinds) - set(KINDS)
    if unknown:
        print(f"bench: unknown measurement {sorted(unknown)[0]!r}: use {', '.join(KINDS)}", file=sys.stderr)
        return 2
    configs = tuple(c for c in args.config.split(",") if c)
    paths = Paths.default()
    scratch = Path(tempfile.mkdtemp(prefix="bench-build-", dir=paths.sub("tmp")))
    out = (args.out or scratch / "o").resolve()
    private_cache = scratch / "ccache"

    def request(env: tuple) -> build_mod.BuildRequest:
        return build_mod.BuildRequest(args.tree, out, configs, args.jobs, True, 6 * 3600, build_mod.CONFIG_DIR, env)

    lines = [f"tree {args.tree}, fragments {'+'.join(configs)}, -j{args.jobs or 'CPUs'}, O={out}"]
    try:
        for kind in kinds:
            if kind in ("cold", "warm-ccache"):
                shutil.rmtree(out, ignore_errors=True)
                lines.append(measure(kind, request((("CCACHE_DIR", str(private_cache)),)), private_cache))
            else:
                if not (out / "arch" / "x86" / "boot" / "bzImage").exists():
                    print("bench: building once first (not measured) for the incremental build", file=sys.stderr)
                    build_mod.build(request(()), log=lambda s: None)
                (out / CHANGED_OBJECT).unlink(missing_ok=True)
                lines.append(measure(kind, request((("CCACHE_RECACHE", "1"),)), None) + f" ({CHANGED_OBJECT})")
    except HarnessError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
