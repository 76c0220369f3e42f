"""The pin matrix as parametrized tests: each cell boots a guest, runs a pin
workload on a fresh ext4/xfs disk, verifies the data and compares with the
oracle. Known-bug cells are strict xfails: they pass only while the bug shows,
so a kernel that fixes it turns up as XPASS (a failure)."""
import pytest

from harness.pytest_plugin import check_cell

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
    ("vhost_net", "bh-fill+reclaim", ("ext4",)),
]
PARAMS = [(w, s, fs) for w, s, fss in CI_CELLS for fs in fss]


@pytest.mark.parametrize("workload,stressors,fs_type", PARAMS, ids=[f"{w}-{fs}-{s}" for w, s, fs in PARAMS])
def test_cell(request, ph_session, kernel, kernel_spec, workload, stressors, fs_type):
    check_cell(request, ph_session, kernel, kernel_spec, workload, fs_type, stressors)
