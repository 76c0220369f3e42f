"""debian-src:LINE: Debian's linux-source-LINE built with kernel-configs/ fragments (base,pins).

Debian's own kernels lack the options some pin paths need (CONFIG_GUP_TEST, CONFIG_IOMMUFD_TEST,
CONFIG_VDPA_SIM_NET). This takes the newest ``linux-source-LINE`` package from Debian's signed
indexes (harness.vm.debian), unpacks its tarball into ``<cache>/src/linux-source-LINE`` once, and
builds it in the stable O= directory of ``build.default_out`` (incremental, through ccache).
``resolve_spec`` is the one kernel-spec resolver of the front-ends: it handles ``debian-src:`` and
hands every other spec to ``harness.vm.kernel.resolve``.
"""
from __future__ import annotations

import dataclasses
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Callable, Optional, Sequence

from harness.errors import KernelError
from harness.kbuild import build as build_mod
from harness.vm import debian
from harness.vm import kernel as kernel_mod
from harness.vm.host import Paths, require_space, require_tool
from harness.vm.kernel import Kernel

PREFIX = "debian-src:"


def source_tree(line: str, paths: Paths, log: Callable[[str], None] = print, refresh: bool = False) -> Path:
    """The unpacked tree of Debian's newest linux-source-LINE (fetched and unpacked once)."""
    tree = paths.sub("src") / f"linux-source-{line}"
    stamp = tree / ".pinharness-source"
    if stamp.exists():
        return tree
    deb = debian.resolve_source(line, debian.Index(paths, refresh=refresh, log=log))
    got = debian.fetch_deb(deb, paths, progress=None)
    require_space(tree.parent, 3 << 30, f"unpacking {deb.package}")
    log(f"pinharness: unpacking {got.name} into {tree}")
    tmp = Path(tempfile.mkdtemp(prefix=tree.name + ".", suffix=".tmp", dir=tree.parent))
    try:
        subprocess.run([require_tool("dpkg-deb"), "-x", str(got), str(tmp / "deb")], check=True,
                       capture_output=True, timeout=1800)
        tarballs = sorted((tmp / "deb" / "usr" / "src").glob(f"linux-source-{line}.tar.*"))
        if not tarballs:
            raise KernelError(f"{got.name} holds no usr/src/linux-source-{line}.tar.*")
        subprocess.run(["tar", "-xaf", str(tarballs[0]), "-C", str(tmp)], check=True, capture_output=True,
                       timeout=3600)
        top = tmp / f"linux-source-{line}"
        if not (top / "Makefile").exists():
            raise KernelError(f"{tarballs[0].name} did not unpack into linux-source-{line}/")
        (top / ".pinharness-source").write_text(f"{deb.package} {deb.version}\n")
        shutil.rmtree(tree, ignore_errors=True)
        top.rename(tree)
    except subprocess.CalledProcessError as exc:
        err = (exc.stderr or b"").decode(errors="replace").strip()[-200:]
        raise KernelError(f"unpacking {got.name} failed: {err}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return tree


def build_source(line: str, paths: Paths, configs: Sequence[str] = build_mod.DEFAULT_CONFIGS,
                 log: Callable[[str], None] = print, refresh: bool = False) -> Kernel:
    """debian-src:LINE as a bootable Kernel (built, or reused from its O= directory)."""
    tree = source_tree(line, paths, log, refresh)
    out = build_mod.default_out(tree, configs, paths)
    kernel, _ = build_mod.build_kernel(build_mod.BuildRequest(tree, out, tuple(configs)), paths, log=log)
    return dataclasses.replace(kernel, name=f"debian-src-{line}", source=f"{PREFIX}{line}")


def resolve_spec(spec: str, paths: Paths, modules: Optional[Path] = None, log: Callable[[str], None] = print,
                 refresh: bool = False, download_progress: Optional[Callable[[str], debian.Progress]] = None
                 ) -> Kernel:
    """Any kernel spec: debian-src:LINE here, the rest by harness.vm.kernel.resolve.
    ``download_progress(package)`` gives the ``progress(done_bytes, total_bytes)`` of one download."""
    if spec.startswith(PREFIX):
        return build_source(spec[len(PREFIX):], paths, log=log, refresh=refresh)
    kw = {"download_progress": download_progress} if download_progress else {}
    return kernel_mod.resolve(spec, paths, modules=modules, log=log, refresh=refresh, **kw)
