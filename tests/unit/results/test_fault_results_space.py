"""Fault injection: a full disk while writing results is named, and leaves no half-written file (issue 16).
The full disk is real: the output file is a symlink to /dev/full, whose writes fail with ENOSPC."""
import os

import pytest

from harness.errors import NoSpace
from harness.results import model as results
from harness.results.outputs import FORMATS, write_outputs
from results_samples import cell_results, sample_run

pytestmark = [pytest.mark.fault,
              pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")]


def full(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to("/dev/full")
    return path


def named(exc, directory):
    msg = str(exc.value)
    assert "\n" not in msg and str(directory) in msg and "MiB free" in msg and "no space left" in msg
    return msg


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_every_output_format_on_a_full_disk(tmp_path, fmt):
    run = sample_run(tmp_path / "run")
    out = tmp_path / "out"
    target = full(out / FORMATS[fmt][0])
    with pytest.raises(NoSpace) as exc:
        write_outputs(run, out, [fmt])
    assert FORMATS[fmt][0] in named(exc, out)
    assert not os.path.lexists(target)


@pytest.mark.parametrize("writer,name", [
    (lambda cells, p: results.write_json(cells, p, {"accel": "tcg"}), "results.json"),
    (lambda cells, p: results.write_junit(cells, p), "junit.xml"),
])
def test_run_writers_on_a_full_disk(tmp_path, writer, name):
    cells = cell_results(tmp_path / "art")
    target = full(tmp_path / "out" / name)
    with pytest.raises(NoSpace) as exc:
        writer(cells, target)
    named(exc, tmp_path / "out")
    assert not os.path.lexists(target)
