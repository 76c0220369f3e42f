"""Every file a run or a merge of runs can write, from one ``RunResults``: a table of formats."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

from harness.results import kcidb as render_kcidb
from harness.results import ktap as render_ktap
from harness.results import markdown as render_markdown
from harness.results import model as results
from harness.results import summary
from harness.errors import HarnessError, named_enospc


@dataclass(frozen=True)
class OutputOptions:
    previous: Optional[results.RunResults] = None  # for the "since last run" part of html/markdown
    run_id: Optional[str] = None  # kcidb test ids (default: the run's creation time)
    base_url: Optional[str] = None  # where the results directory is published (kcidb log URLs)
    title: str = "pinharness matrix"


Writer = Callable[[results.RunResults, Path, OutputOptions], Path]

# format -> (file name in the results directory, writer)
FORMATS: dict[str, tuple[str, Writer]] = {
    "json": ("results.json", lambda run, p, o: results.write_run(run, p)),
    "junit": ("junit.xml", lambda run, p, o: results.write_junit(run.cells, p)),
    "ktap": ("results.ktap", lambda run, p, o: render_ktap.write_ktap(run, p)),
    "kcidb": ("kcidb.json", lambda run, p, o: render_kcidb.write_kcidb(run, p, o.run_id, o.base_url)),
    "html": ("summary.html", lambda run, p, o: summary.write_html(run, p, o.previous, o.title)),
    "markdown": ("summary.md", lambda run, p, o: render_markdown.write_markdown(run, p, o.previous, o.title)),
}


def write_outputs(run: results.RunResults, out_dir: Path, formats: Sequence[str],
                  options: Optional[OutputOptions] = None) -> dict[str, Path]:
    """Write ``formats`` (keys of FORMATS) into ``out_dir``; returns format -> path."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise HarnessError(f"unknown output format {', '.join(unknown)}: use {', '.join(FORMATS)}")
    with named_enospc(out_dir, "the results directory"):
        out_dir.mkdir(parents=True, exist_ok=True)
    opts = options or OutputOptions()
    written = {}
    for f in formats:
        path = out_dir / FORMATS[f][0]
        with results.complete_or_absent(path):
            written[f] = FORMATS[f][1](run, path, opts)
    return written
