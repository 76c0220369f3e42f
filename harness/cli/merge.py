"""`python -m harness merge RESULTS... --out DIR`: one run from CI shards, every output written.

Reads results.json files (or directories holding them, searched), refuses overlapping shards,
and writes DIR/results.json (artifact paths relative to it) plus JUnit, KTAP, kcidb, HTML and
Markdown (--format to choose). With --previous the page gets its "since last run" section.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from harness.results import model as results
from harness.results.outputs import FORMATS, OutputOptions, write_outputs


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("results", nargs="+", type=Path, help="results.json files or directories (searched for them)")
    p.add_argument("--out", type=Path, required=True, help="directory for the merged outputs")
    p.add_argument("--format", action="append", choices=list(FORMATS), default=None,
                   help=f"output format (repeatable; default all: {', '.join(FORMATS)})")
    p.add_argument("--previous", type=Path, metavar="OLD", help="the previous run's results, for 'since last run'")
    p.add_argument("--run-id", help="id of this run in kcidb test ids (default: its creation time)")
    p.add_argument("--base-url", help="URL where --out will be published (adds log URLs to kcidb)")
    p.add_argument("--title", default="pinharness matrix", help="page title")


def run(args: argparse.Namespace) -> int:
    paths = results.find(args.results)
    merged = results.merge([results.load(p) for p in paths])
    previous = results.load(args.previous) if args.previous else None
    opts = OutputOptions(previous, args.run_id, args.base_url, args.title)
    written = write_outputs(merged, args.out, args.format or list(FORMATS), opts)
    print(results.table(merged.cells))
    print(f"\nmerged {len(paths)} results file(s), {len(merged.cells)} cells:")
    for fmt, path in written.items():
        print(f"  {fmt:<9} {path}")
    return 0
