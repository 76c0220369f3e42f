"""Pin paths that Debian's kernels do not build (slow: not in the CI tier).

vhost-vdpa needs CONFIG_VDPA_SIM_NET, iommufd CONFIG_IOMMUFD_TEST (v6.2+) and
gup_test CONFIG_GUP_TEST. This builds Debian's linux-source-6.1, -6.12 and -7.2
(the `debian-src:LINE` kernel spec: the package from Debian's signed indexes,
built with kernel-configs/ base+pins; incremental once built, ~40 min each from
clean on 2 cores) and runs those workloads on the results, each cell compared
with the oracle like tests/vm/test_matrix.py. A workload the kernel cannot run
(iommufd on 6.1: no IOMMUFD) is skipped with that reason.

    pytest -m slow tests/vm/test_custom_kernels.py
"""
from __future__ import annotations

import pytest

from harness.pytest_plugin import check_cell

pytestmark = [pytest.mark.slow, pytest.mark.vm]

LINES = ("6.1", "6.12", "7.2")
CELLS = [
    ("vhost_vdpa", "mglru-off+bh-fill+reclaim"),
    ("vhost_vdpa", "bh-fill+reclaim"),
    ("iommufd", "reclaim"),
    ("gup_test", "none"),
]


@pytest.fixture(scope="module", params=LINES, ids=lambda v: f"debian-src-{v}")
def built(request, ph_session):
    """(kernel spec, Kernel) of base+pins built from Debian's linux-source-<line>."""
    spec = f"debian-src:{request.param}"
    return spec, ph_session.kernel(spec)


@pytest.mark.parametrize("workload,stressors", CELLS, ids=[f"{w}-ext4-{s}" for w, s in CELLS])
def test_cell(request, ph_session, built, workload, stressors):
    spec, kernel = built
    check_cell(request, ph_session, kernel, spec, workload, "ext4", stressors, subdir="custom-kernels")
