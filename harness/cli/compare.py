"""`python -m harness compare OLD.json NEW.json`: what changed since the previous run."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from harness.results import model as results
from harness.results.compare import RULES, Comparison, compare


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("old", type=Path, help="the previous run's results.json (or its results directory)")
    p.add_argument("new", type=Path, help="this run's results.json (or its results directory)")
    p.add_argument("--fail-on-new", action="store_true",
                   help="exit 1 when a cell is NEW (a problem appeared with a kernel change); FLAKY never fails")
    p.add_argument("--all", action="store_true", help="list unchanged cells too")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.epilog = "rules (first match wins): " + "; ".join(f"{k}: {v}" for k, v in RULES.items())


def to_json(cmp: Comparison) -> dict:
    return {"counts": cmp.counts,
            "changes": [{"cell": c.cell_id, "change": c.kind, "old_release": c.old_release,
                         "new_release": c.new_release, "old": c.old_outcome, "new": c.new_outcome,
                         "appeared": list(c.appeared), "gone": list(c.gone)} for c in cmp.changes]}


def run(args: argparse.Namespace) -> int:
    old, new = results.load(args.old), results.load(args.new)
    cmp = compare(old, new)
    if args.format == "json":
        print(json.dumps(to_json(cmp), indent=1))
    else:
        print(f"old: {old.path} ({old.created or '?'}, {len(old.cells)} cells)")
        print(f"new: {new.path} ({new.created or '?'}, {len(new.cells)} cells)")
        for c in cmp.changes:
            if c.kind != "UNCHANGED" or args.all:
                print(c.line())
        print(f"summary: {cmp.summary()}")
    return 1 if args.fail_on_new and cmp.of("NEW") else 0
