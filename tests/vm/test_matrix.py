"""The pin matrix as parametrized tests: each cell boots a guest, runs a pin
workload on a fresh ext4/xfs disk, verifies the data and compares with the
oracle. Known-bug cells are strict xfails: they pass only while the bug shows,
so a kernel that fixes it turns up as XPASS (a failure)."""
import pytest

from harness.pytest_plugin import check_cell
from harness.pins.stressors import STRESSORS
from harness.pins.stressors import parse as parse_stressors

pytestmark = pytest.mark.vm

# (workload, stressors, file systems): the CI tier. odirect, io_uring and vfio on both file
# systems; the other pin paths on ext4, where the bug lives (xfs is covered by the main job).
# vhost_vdpa, iommufd and gup_test need options Debian lacks: tests/vm/test_custom_kernels.py.
CI_CELLS = [
    ("odirect", "reclaim", ("ext4", "xfs")),
    ("io_uring", "none", ("ext4", "xfs")),
    ("vfio", "bh-fill+reclaim", ("ext4", "xfs")),
    ("rdma", "bh-fill+reclaim", ("ext4",)),
    ("af_xdp", "bh-fill+reclaim", ("ext4",)),
    ("kvm", "bh-fill+reclaim", ("ext4",)),
    ("vhost_net", "bh-fill+reclaim", ("ext4",)),
    # stressors the workload runs while its pin is held (6.12 refuses the pin: they do not apply there)
    ("vfio", "fsfreeze", ("ext4",)),
    ("vfio", "punch-hole", ("ext4",)),
]
PARAMS = [(w, s, fs) for w, s, fss in CI_CELLS for fs in fss]


@pytest.mark.parametrize("workload,stressors,fs_type", PARAMS, ids=[f"{w}-{fs}-{s}" for w, s, fs in PARAMS])
def test_cell(request, ph_session, kernel, kernel_spec, workload, stressors, fs_type):
    res = check_cell(request, ph_session, kernel, kernel_spec, workload, fs_type, stressors)
    held = [n for n in parse_stressors(stressors) if STRESSORS[n].while_held]
    if held and not res.pin_errno:  # the steps really ran with the pin held, and the data check followed them
        assert f"{'+'.join(held)}: ran while the pin was held" in res.run["stressor_notes"], res.run["stressor_notes"]
        assert res.run["data_check"] is all(STRESSORS[n].keeps_data for n in held)
