"""Pin paths that Debian's kernels do not build (slow: not in the CI tier).

vhost-vdpa needs CONFIG_VDPA_SIM_NET, iommufd CONFIG_IOMMUFD_TEST (v6.2+) and
gup_test CONFIG_GUP_TEST. This builds Debian's linux-source-6.1 and -6.12 with
kernel-configs/ base+pins (`python -m harness build`; incremental once built,
~25 min each from clean on 2 cores) and runs those workloads on the results,
each cell compared with the oracle like tests/vm/test_matrix.py. A workload the
kernel cannot run (iommufd on 6.1: no IOMMUFD) is skipped with that reason.

    pytest -m slow tests/vm/test_custom_kernels.py
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from harness.kbuild import build as build_mod
from harness.pytest_plugin import check_cell

pytestmark = [pytest.mark.slow, pytest.mark.vm]

SOURCES = {"6.1": Path("/usr/src/linux-source-6.1.tar.xz"), "6.12": Path("/usr/src/linux-source-6.12.tar.xz")}
CELLS = [
    ("vhost_vdpa", "mglru-off+bh-fill+reclaim"),
    ("vhost_vdpa", "bh-fill+reclaim"),
    ("iommufd", "reclaim"),
    ("gup_test", "none"),
]


@pytest.fixture(scope="module", params=sorted(SOURCES), ids=lambda v: f"linux-source-{v}")
def built(request, ph_session):
    """(kernel spec, Kernel) of base+pins built from Debian's linux-source-<version>."""
    tarball = SOURCES[request.param]
    if not tarball.exists():
        pytest.skip(f"{tarball} missing: apt-get install linux-source-{request.param}")
    tree = ph_session.paths.cache / "src" / f"linux-source-{request.param}"
    if not (tree / "Makefile").exists():
        tree.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["tar", "-xaf", str(tarball), "-C", str(tree.parent)], check=True, timeout=1800)
    configs = build_mod.DEFAULT_CONFIGS
    out = build_mod.default_out(tree, configs, ph_session.paths)
    kernel, _ = build_mod.build_kernel(build_mod.BuildRequest(tree, out, configs), ph_session.paths,
                                       log=lambda s: None)
    return f"tree:{out}", kernel


@pytest.mark.parametrize("workload,stressors", CELLS, ids=[f"{w}-ext4-{s}" for w, s in CELLS])
def test_cell(request, ph_session, built, workload, stressors):
    spec, kernel = built
    check_cell(request, ph_session, kernel, spec, workload, "ext4", stressors, subdir="custom-kernels")
