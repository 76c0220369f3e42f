"""Debian's kernels from Debian's archive with the host's apt hidden (marker `net`: no VM, needs the
archive). .ci/run runs the whole test phase under .ci/apt-isolated.conf; these tests set it themselves."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.vm import debian
from harness.vm import kernel as kernel_mod
from harness.vm.host import Paths

pytestmark = pytest.mark.net
ISOLATED = Path(__file__).resolve().parents[2] / ".ci" / "apt-isolated.conf"


@pytest.fixture
def no_host_apt(monkeypatch):
    monkeypatch.setenv("APT_CONFIG", str(ISOLATED))
    if shutil.which("apt-cache"):  # the isolation is real: apt knows no Debian kernel now
        out = subprocess.run(["apt-cache", "pkgnames", "linux-image-"], capture_output=True, text=True,
                             timeout=60, env=dict(os.environ, APT_CONFIG=str(ISOLATED)))
        assert out.stdout.split() == []


@pytest.mark.parametrize("spec,layout,line", [("6.1", "image", "6.1"), ("6.12", "image", "6.12"),
                                               ("sid", "split", None), ("experimental", "split", None)])
def test_specs_resolve_from_signed_indexes(no_host_apt, tmp_path, spec, layout, line):
    index = debian.Index(Paths(tmp_path), log=lambda s: None)
    k = debian.resolve(spec, index)
    assert debian.RELEASE_RE.fullmatch(k.release) and k.layout == layout
    assert line is None or k.line == line
    assert all(len(d.sha256) == 64 and d.size > 0 and d.filename.endswith(".deb") for d in k.debs)
    assert (tmp_path / "debian-index").is_dir() and any((tmp_path / "debian-index").glob("*.json"))


def test_sid_is_newer_than_every_stable_line(no_host_apt, tmp_path):
    index = debian.Index(Paths(tmp_path), log=lambda s: None)
    sid, old = debian.resolve("sid", index), debian.resolve("6.12", index)
    assert debian.compare_versions(sid.upstream, old.upstream) > 0


@pytest.mark.parametrize("spec", ["debian:6.1", "debian:sid"])
def test_kernel_unpacks_into_the_cache(no_host_apt, spec):
    """The real packages of both packagings, in the shared cache (the VM tier boots them next)."""
    k = kernel_mod.resolve(spec, Paths.default(), log=lambda s: None)
    assert kernel_mod.identify_image(k.image) == "bzimage"
    assert (k.modules_dir / "modules.dep").stat().st_size > 0
    assert k.config.get("CONFIG_EXT4_FS") in ("y", "m") and k.release == k.modules_dir.name


@pytest.mark.parametrize("spec", ["debian:6.1", "debian:sid"])
def test_debian_kernels_boot_through_pvh(no_host_apt, spec):
    """XZ (6.1) and ZSTD (7.x) payloads both give a vmlinux with the PVH entry note."""
    from harness.vm import pvh
    k = kernel_mod.resolve(spec, Paths.default(), log=lambda s: None)
    vmlinux = pvh.pvh_vmlinux(k.image, Paths.default())
    assert vmlinux is not None and pvh.has_pvh_note(vmlinux)
