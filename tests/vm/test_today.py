"""Today's kernel: the pin cells of the CI tier on the newest Debian kernel (sid, 7.x at the time
of writing), whatever VM-test kernels are chosen. The data loss that MGLRU-off and buffer-head
pressure cause through O_DIRECT is a known bug there (a strict xfail: a fix shows up as XPASS)."""
import pytest

from harness.pytest_plugin import check_cell

pytestmark = pytest.mark.vm

TODAY = "debian:sid"
CELLS = [
    ("odirect", "mglru-off+bh-fill+reclaim", "ext4"),  # KNOWN-BUG: WARNING + all pages lost
    ("odirect", "reclaim", "ext4"),  # MGLRU on (the default): clean
    ("vfio", "bh-fill+reclaim", "ext4"),  # the long-term pin is refused: PROTECTED(EFAULT)
    ("rdma", "bh-fill+reclaim", "ext4"),
    ("io_uring", "none", "ext4"),
]


@pytest.mark.parametrize("kernel_spec", [TODAY], ids=["debian-sid"], scope="session")
@pytest.mark.parametrize("workload,stressors,fs_type", CELLS, ids=[f"{w}-{fs}-{s}" for w, s, fs in CELLS])
def test_today(request, ph_session, kernel, kernel_spec, workload, stressors, fs_type):
    assert kernel.version_tuple >= (6, 5), f"{TODAY} is {kernel.release}: not today's kernel"
    check_cell(request, ph_session, kernel, kernel_spec, workload, fs_type, stressors, subdir="today")
