"""The pin matrix as parametrized tests: each cell boots a guest, runs a pin
workload on a fresh ext4/xfs disk, verifies the data and compares with the
oracle. Known-bug cells are strict xfails: they pass only while the bug shows,
so a kernel that fixes it turns up as XPASS (a failure)."""
import pytest

from harness import oracle
from harness.matrix import Cell, run_cell
from harness.stressors import parse as parse_stressors

pytestmark = pytest.mark.vm

# (workload, stressors, file systems): the CI tier. odirect, io_uring and vfio on both file
# systems; the other pin paths on ext4, where the bug lives (xfs is covered by the main job).
CI_CELLS = [
    ("odirect", "reclaim", ("ext4", "xfs")),
    ("io_uring", "none", ("ext4", "xfs")),
    ("vfio", "bh-fill+reclaim", ("ext4", "xfs")),
    ("rdma", "bh-fill+reclaim", ("ext4",)),
    ("af_xdp", "bh-fill+reclaim", ("ext4",)),
    ("kvm", "bh-fill+reclaim", ("ext4",)),
]
PARAMS = [(w, s, fs) for w, s, fss in CI_CELLS for fs in fss]


class KnownBugReproduced(AssertionError):
    """The cell reproduced the known kernel bug the oracle expects."""


@pytest.mark.parametrize("workload,stressors,fs_type", PARAMS, ids=[f"{w}-{fs}-{s}" for w, s, fs in PARAMS])
def test_cell(request, ph_session, kernel, kernel_spec, guest_image, workload, stressors, fs_type):
    cell = Cell(kernel_spec, workload, fs_type, parse_stressors(stressors))
    exp = oracle.expectation(kernel.version_tuple, workload, fs_type, cell.stressors, config=kernel.config)
    assert exp is not None, f"no oracle row for {cell.id}"
    if exp.bug:
        request.applymarker(pytest.mark.xfail(strict=True, raises=KnownBugReproduced,
                                              reason=f"known bug: {exp.expect} ({exp.why})"))
    res = run_cell(cell, kernel, guest_image, ph_session.paths, ph_session.artifacts / "matrix",
                   ph_session.accel_for(kernel), ph_session.vm_options(request.node), log=lambda s: None)
    assert res.status not in ("ERROR", "SKIP"), f"{res.status}: {res.detail} (artifacts: {res.artifacts})"
    assert res.ok, f"{res.status}: {res.detail}; expected {res.expect} (artifacts: {res.artifacts})"
    if exp.bug:
        raise KnownBugReproduced(f"{res.outcome} on {kernel.release}")
