"""`python -m harness summary RESULTS.json... [--previous OLD.json] [--html F] [--markdown F]`.

The matrix page (HTML) and the CI job summary (Markdown) from one or more results files
(several are merged, e.g. the shards of a nightly run). Without --html/--markdown the
Markdown goes to stdout (append it to $GITHUB_STEP_SUMMARY).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from harness.results import model as results
from harness.results.markdown import render_markdown, write_markdown
from harness.results.summary import build, write_html


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("results", nargs="+", type=Path, help="results.json files or directories (searched for them)")
    p.add_argument("--previous", type=Path, metavar="OLD", help="the previous run's results, for 'since last run'")
    p.add_argument("--html", type=Path, metavar="FILE", help="write the self-contained HTML page here")
    p.add_argument("--markdown", type=Path, metavar="FILE", help="write the Markdown summary here")
    p.add_argument("--title", default="pinharness matrix", help="page title")


def run(args: argparse.Namespace) -> int:
    run_ = results.load_many(args.results)
    previous = results.load(args.previous) if args.previous else None
    if args.html:
        print(f"html: {write_html(run_, args.html, previous, args.title)}")
    if args.markdown:
        print(f"markdown: {write_markdown(run_, args.markdown, previous, args.title)}")
    if not args.html and not args.markdown:
        print(render_markdown(build(run_, previous), args.title), end="")
    return 0
