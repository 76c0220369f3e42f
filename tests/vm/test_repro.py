"""The reproducer export end to end: run the odirect/ext4 cell in the harness, export it
(`python -m harness repro`'s export), unpack the tarball in a fresh directory and run its qemu.sh
with the project's Python off PATH. 6.1 (DIO takes page references): REPRODUCED with the cell's
title and every page lost. 6.12 (FOLL_PIN DIO, MGLRU on): CLEAN.

qemu.sh boots the kernel the harness used (KERNEL= and MODULES= from the session, so the run is
hermetic); PINHARNESS_REPRO_DOWNLOAD=1 makes it download Debian's package itself, as a reader would."""
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from harness.pins import repro
from harness.pins.matrix import Cell, run_cell
from harness.pins.stressors import parse as parse_stressors

pytestmark = pytest.mark.vm

CASES = [("debian:6.1", True), ("debian:6.12", False)]


def _path_without_the_project() -> str:
    """PATH minus the directories of this Python (the venv) and anything pinharness put there."""
    venv = Path(sys.executable).parent.resolve()
    keep = [p for p in os.environ.get("PATH", "").split(":")
            if p and Path(p).resolve() != venv and ".venv" not in p and "pinharness" not in p]
    return ":".join(dict.fromkeys(keep + ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]))


@pytest.mark.parametrize("kernel_spec,bug", CASES, ids=["debian-6.1-known-bug", "debian-6.12-clean"],
                         scope="session")
def test_the_export_reproduces_without_pinharness(request, ph_session, kernel, kernel_spec, bug, tmp_path):
    cell = Cell(kernel_spec, "odirect", "ext4", parse_stressors("reclaim"))
    accel = ph_session.accel_for(kernel)
    res = run_cell(cell, kernel, request.getfixturevalue("guest_image"), ph_session.paths,
                   ph_session.artifacts / "repro", accel, ph_session.vm_options(request.node), log=lambda s: None)
    want = "KNOWN-BUG" if bug else "EXPECTED"
    assert res.status == want, f"the cell itself: {res.status}: {res.detail} (artifacts: {res.artifacts})"
    if bug:
        assert res.titles and res.lost_pages == res.device_pages > 0, res.outcome

    out = repro.export(repro.load(Path(res.artifacts)), tmp_path / "export")
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    with tarfile.open(out.tarball) as tar:
        tar.extractall(fresh)
    directory = fresh / out.directory.name
    env = {"PATH": _path_without_the_project(), "HOME": str(tmp_path), "ACCEL": accel.accel, "TIMEOUT": "1500",
           "LANG": "C"}
    if not os.environ.get("PINHARNESS_REPRO_DOWNLOAD"):
        env.update(KERNEL=str(kernel.image), MODULES=str(kernel.modules_dir))
    assert shutil.which("python3", path=env["PATH"]) != sys.executable
    proc = subprocess.run(["bash", "./qemu.sh"], cwd=directory, env=env, capture_output=True, text=True,
                          timeout=1800)
    keep = Path(res.artifacts) / "repro-qemu.sh.log"  # for the post-mortem
    keep.write_text(f"exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")
    lines = proc.stdout.strip().splitlines()
    assert lines, f"qemu.sh printed nothing (exit {proc.returncode}): {proc.stderr[-2000:]}"
    if bug:
        assert (proc.returncode, lines[-1]) == (
            1, f"REPRODUCED: {res.titles[0]}, {res.device_pages}/{res.device_pages} pages lost"), \
            f"see {keep}"
    else:
        assert proc.returncode == 0 and lines[-1].startswith("CLEAN: "), f"{lines[-1]} (see {keep})"
        assert lines[-1] == f"CLEAN: {res.device_pages}/{res.device_pages} pages the device wrote are on disk, " \
                            "no kernel report", f"see {keep}"
