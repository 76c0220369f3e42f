"""Kernels to boot: from a built tree, from an image file, or from Debian's packages.

Everything is resolved into a ``Kernel``: the image QEMU boots, its release, its
config, its modules directory (``/lib/modules/<release>`` content) and, when we
have one, the vmlinux with DWARF for symbolization.
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import json
import re
import shutil
import subprocess
import tempfile
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

from harness.errors import KernelError, raise_if_enospc
from harness.vm import arch as arch_mod
from harness.vm import debian, kernel_image
from harness.vm.cache import atomic_artifact
from harness.vm.cache import problem as cache_problem
from harness.vm.host import Paths, require_space, require_tool


# The default kernels: the last Debian line that allows long-term pins of
# ext4/xfs shared mappings (6.1), one that refuses them (6.12, >= v6.5), and today's (sid).
DEFAULT_KERNELS = ("debian:6.1", "debian:6.12", "debian:sid")


@dataclass(frozen=True)
class Kernel:
    """A kernel ready to boot."""

    name: str  # short id used in test ids and artifact paths, e.g. "debian-6.1"
    source: str  # the spec it came from: "debian:6.1", "tree:/src/linux", "image:/boot/vmlinuz"
    image: Path  # bzImage (or an ELF vmlinux with a PVH note)
    release: str  # `uname -r` in the guest
    modules_dir: Optional[Path] = None  # a directory holding /lib/modules/<release> content
    config_path: Optional[Path] = None
    vmlinux: Optional[Path] = None  # with DWARF when known
    debug_modules_dir: Optional[Path] = None  # .ko files with DWARF (module frames), when known
    arch: str = arch_mod.DEFAULT  # x86_64 | arm64 (a row of harness.vm.arch.ARCHES)
    extra: dict = field(default_factory=dict, compare=False)

    @functools.cached_property
    def config(self) -> dict[str, str]:
        if self.config_path and self.config_path.exists():
            return parse_config(self.config_path.read_text(errors="replace"))
        if self.vmlinux and self.vmlinux.exists():
            text = ikconfig_from_elf(self.vmlinux)
            if text:
                return parse_config(text)
        return {}

    @functools.cached_property
    def build_id(self) -> Optional[str]:
        """GNU build-id of the vmlinux (pyelftools), when we have one."""
        if self.vmlinux is None or not self.vmlinux.exists():
            return None
        return elf_info(self.vmlinux)["build_id"]

    def has_config(self, option: str) -> bool:
        """True when CONFIG_<option> is y or m. Unknown config: False."""
        key = option if option.startswith("CONFIG_") else "CONFIG_" + option
        return self.config.get(key) in ("y", "m")

    def missing_config(self, *options: str) -> list[str]:
        return [o if o.startswith("CONFIG_") else "CONFIG_" + o for o in options if not self.has_config(o)]

    @property
    def version_tuple(self) -> tuple[int, ...]:
        m = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", self.release)
        if not m:
            return (0,)
        return tuple(int(x or 0) for x in m.groups())

    def describe(self) -> dict:
        return {"name": self.name, "source": self.source, "arch": self.arch, "image": str(self.image),
                "release": self.release,
                "modules_dir": str(self.modules_dir) if self.modules_dir else None,
                "vmlinux": str(self.vmlinux) if self.vmlinux else None,
                "config": str(self.config_path) if self.config_path else None}

    def record(self, options: Sequence[str] = ()) -> dict:
        """What a finding needs to name this kernel later: ``describe()``, the Debian packages it
        came from (URL and SHA256) and the values of ``options`` (CONFIG_ names; "n" when unset,
        "?" without a config)."""
        keys = [o if o.startswith("CONFIG_") else "CONFIG_" + o for o in options]
        return {**self.describe(), "debian": {k: v for k, v in self.extra.items() if k != "dbg"},
                "config_values": {k: self.config.get(k, "n") if self.config else "?" for k in keys}}


# --------------------------------------------------------------------------- config

def parse_config(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("CONFIG_") and "=" in line:
            k, v = line.split("=", 1)
            out[k] = v.strip('"') if v.startswith('"') else v
        else:
            m = re.match(r"# (CONFIG_\w+) is not set", line)
            if m:
                out[m.group(1)] = "n"
    return out


def ikconfig_from_elf(path: Path) -> Optional[str]:
    """The IKCONFIG blob (between IKCFG_ST and IKCFG_ED, gzip) of an uncompressed vmlinux."""
    data = path.read_bytes()
    start = data.find(b"IKCFG_ST")
    if start < 0:
        return None
    end = data.find(b"IKCFG_ED", start)
    if end < 0:
        return None
    try:
        return gzip.decompress(data[start + 8:end]).decode(errors="replace")
    except (OSError, EOFError, zlib.error):
        return None


# --------------------------------------------------------------------------- images

def bzimage_release(path: Path) -> Optional[str]:
    """Release string of a bzImage from its setup header, or None if it is not one."""
    return kernel_image.bzimage_release(path)


def elf_info(path: Path) -> dict:
    """release (from linux_banner), build-id of an ELF vmlinux."""
    from elftools.elf.elffile import ELFFile

    info: dict = {"release": None, "build_id": None}
    with open(path, "rb") as f:
        elf = ELFFile(f)
        for sec in elf.iter_sections():
            if sec.header.sh_type == "SHT_NOTE":
                for note in sec.iter_notes():
                    if note["n_type"] == "NT_GNU_BUILD_ID":
                        info["build_id"] = note["n_desc"]
        ro = elf.get_section_by_name(".rodata")
        if ro is not None:
            data = ro.data()
            i = data.find(b"Linux version ")
            if i >= 0:
                info["release"] = data[i + 14:i + 200].split(b" ", 1)[0].decode(errors="replace")
    return info


def identify_image(path: Path) -> str:
    """'bzimage' or 'elf', checked whole and x86-64, or a one-line error naming the problem."""
    return kernel_image.kind(path)


def from_image(path: Path, modules: Optional[Path] = None, config: Optional[Path] = None,
               vmlinux: Optional[Path] = None, paths: Optional[Paths] = None, arch: Optional[str] = None) -> Kernel:
    """A kernel image file (for ``arch``; None: the architecture its header names). Its modules and
    config are found beside it when it sits in a ``/usr/lib/modules/<release>/`` style directory."""
    path = Path(path).expanduser().resolve()
    if arch is None:
        arch = (kernel_image.arch_of(path) if path.is_file() else None) or arch_mod.DEFAULT
    kind = kernel_image.kind(path, arch)
    if kind == "image":  # arm64: the release from the banner inside the (uncompressed) Image
        release = image_banner_release(path) or ""
    elif kind == "elf":
        info = elf_info(path)
        release = info["release"] or ""
        vmlinux = vmlinux or path
    else:
        release = bzimage_release(path) or ""
    if modules is None and _looks_like_modules_dir(path.parent):
        modules = path.parent
    if modules is not None:
        modules = Path(modules).expanduser().resolve()
        if not modules.is_dir():
            raise KernelError(f"--modules {modules} is not a directory: pass the lib/modules/<release> directory")
        if (modules / "lib" / "modules").is_dir():  # an INSTALL_MOD_PATH root was given
            subs = sorted((modules / "lib" / "modules").iterdir())
            modules = subs[0] if subs else modules
        release = release or modules.name
        if not (modules / "modules.dep").exists():
            modules = _depmod_copy(modules, release, paths)
    if config is None:
        for cand in (path.parent / f"config-{release}", path.parent / "config", path.parent / ".config"):
            if cand.exists():
                config = cand
                break
    return Kernel(name=_name_for(release or path.name, "image"), source=f"image:{path}", image=path, arch=arch,
                  release=release, modules_dir=modules, config_path=config, vmlinux=vmlinux)


def image_banner_release(path: Path) -> Optional[str]:
    """The release in the "Linux version X (...)" banner of an uncompressed kernel image."""
    data = Path(path).read_bytes()
    i = data.find(b"Linux version ")
    while i >= 0:
        word = data[i + 14:i + 200].split(b" ", 1)[0]
        if word[:1].isdigit():
            return word.decode(errors="replace")
        i = data.find(b"Linux version ", i + 1)
    return None


def _looks_like_modules_dir(d: Path) -> bool:
    return (d / "kernel").is_dir() and any((d / f).exists() for f in ("modules.order", "modules.builtin", "modules.dep"))


def _depmod_copy(modules: Path, release: str, paths: Optional[Paths]) -> Path:
    """A copy of a modules directory that has no modules.dep (as Debian's 7.x packages ship them),
    with depmod run on it; cached by the directory's path and time stamp."""
    if paths is None:
        raise KernelError(f"{modules} has no modules.dep: run `depmod -b <root> {release}` first")
    st = modules.stat()
    key = hashlib.sha256(f"{modules}:{st.st_mtime_ns}".encode()).hexdigest()[:12]
    root = paths.sub("image-modules") / f"{release}-{key}"
    moddir = root / "lib" / "modules" / release
    if (moddir / "modules.dep").exists():
        return moddir
    tmp = Path(tempfile.mkdtemp(prefix=root.name + ".", suffix=".tmp", dir=root.parent))
    try:
        (tmp / "lib" / "modules").mkdir(parents=True)
        shutil.copytree(modules, tmp / "lib" / "modules" / release, symlinks=True)
        depmod(tmp, release)
        shutil.rmtree(root, ignore_errors=True)
        tmp.rename(root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return moddir


# --------------------------------------------------------------------------- trees

def from_tree(tree: Path, paths: Paths, log=print, arch: Optional[str] = None) -> Kernel:
    """A built kernel tree or O= build directory: bzImage (x86_64) or Image (arm64), vmlinux, .config,
    modules. ``arch`` None: the architecture whose image the build has."""
    tree = Path(tree).expanduser().resolve()
    if not tree.is_dir():
        raise KernelError(f"--kernel-tree {tree} is not a directory")
    if arch is None:
        arch = next((a.name for a in arch_mod.ARCHES.values() if (tree / a.tree_image).exists()), arch_mod.DEFAULT)
    row = arch_mod.get(arch)
    bz = tree / row.tree_image
    if not bz.exists():
        if (tree / "Makefile").exists() and (tree / "Kconfig").exists():
            raise KernelError(
                f"kernel tree {tree} has no build ({row.tree_image} missing): build it "
                "(`python -m harness build --tree {0}` or `make -j$(nproc) {1} modules`) "
                "or pass its O= build directory".format(tree, Path(row.tree_image).name))
        raise KernelError(f"{tree} is not a kernel tree or build directory (no Makefile/Kconfig, "
                          f"no {Path(row.tree_image).name})")
    kernel_image.kind(bz, row.name)
    release_file = tree / "include" / "config" / "kernel.release"
    release = release_file.read_text().strip() if release_file.exists() else (
        (bzimage_release(bz) if row.name == "x86_64" else image_banner_release(bz)) or "")
    config = tree / ".config"
    vmlinux = tree / "vmlinux" if (tree / "vmlinux").exists() else None
    cfg = parse_config(config.read_text()) if config.exists() else {}
    modules_dir = None
    if cfg.get("CONFIG_MODULES") == "y" and (tree / "modules.order").exists():
        modules_dir = _install_tree_modules(tree, release, bz, paths, log, row)
    return Kernel(name=_name_for(release, "tree"), source=f"tree:{tree}", image=bz, release=release, arch=row.name,
                  modules_dir=modules_dir, config_path=config if config.exists() else None, vmlinux=vmlinux)


def _install_tree_modules(tree: Path, release: str, bz: Path, paths: Paths, log,
                          row: arch_mod.Arch = arch_mod.ARCHES[arch_mod.DEFAULT]) -> Path:
    """`make modules_install` into the cache, keyed by the build; reused when unchanged. ARCH (and
    CROSS_COMPILE for a cross build) as the build had them: an arm64 tree is not read with x86's
    Makefile (``%install`` targets never re-run Kconfig, so CC need not match)."""
    h = hashlib.sha256()
    for p in (bz, tree / "modules.order"):
        st = p.stat()
        h.update(f"{p}:{st.st_size}:{st.st_mtime_ns}".encode())
    root = paths.sub("tree-modules") / f"{release}-{h.hexdigest()[:12]}"

    def build(tmp: Path) -> None:
        log(f"pinharness: installing modules of {tree} into {root}")
        proc = subprocess.run(tree_make_argv(tree, row, "modules_install", f"INSTALL_MOD_PATH={tmp}"),
                              capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            raise_if_enospc(proc.stderr + proc.stdout, root.parent, f"the modules of {tree}")
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
            raise KernelError(f"`make modules_install` failed in {tree}: {tail[0]}")
        if not (tmp / "lib" / "modules" / release / "modules.dep").exists():
            depmod(tmp, release)

    atomic_artifact(root, build, log=log)
    return root / "lib" / "modules" / release


def tree_make_argv(tree: Path, row: arch_mod.Arch, *targets: str) -> list[str]:
    """`make` in a built tree with the ARCH and CROSS_COMPILE `build` gave it (kbuild.build.make_argv)."""
    cross = [f"CROSS_COMPILE={row.cross_prefix}"] if row.cross_prefix else []
    return ["make", "-s", "-C", str(tree), f"ARCH={row.kbuild_arch}", *cross, *targets]


# --------------------------------------------------------------------------- Debian

def depmod(root: Path, release: str) -> None:
    depmod_bin = require_tool("depmod")
    proc = subprocess.run([depmod_bin, "-b", str(root), release], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise KernelError(f"depmod failed for {release}: {proc.stderr.strip()[:200]}")


def _debian_files(root: Path, dk: debian.DebianKernel) -> tuple[Path, Path, Path]:
    """(image, config, modules dir) of an unpacked Debian kernel of either packaging."""
    moddir = root / "lib" / "modules" / dk.release
    if dk.layout == "split":  # linux-binary-unsigned ships vmlinuz.unsigned, linux-binary vmlinuz
        image = next((p for p in (moddir / "vmlinuz", moddir / "vmlinuz.unsigned") if p.exists()), moddir / "vmlinuz")
        return image, moddir / "config", moddir
    return root / "boot" / f"vmlinuz-{dk.release}", root / "boot" / f"config-{dk.release}", moddir


def _log_progress(log) -> Callable[[str], debian.Progress]:
    """A download-progress factory that logs every tenth of a package over 8 MiB."""
    def for_package(name: str) -> debian.Progress:
        last = [-1]

        def progress(done: int, total: int) -> None:
            step = done * 10 // total if total else 0
            if step != last[0] and total > (8 << 20):
                last[0] = step
                log(f"pinharness: downloading {name}: {done >> 20}/{total >> 20} MiB")
        return progress
    return for_package


def _unpack_debian(dk: debian.DebianKernel, tmp: Path, paths: Paths, log,
                   download_progress: Optional[Callable[[str], debian.Progress]] = None) -> None:
    """The kernel's .debs unpacked into ``tmp`` (atomic_artifact renames it into place when complete)."""
    progress_for = download_progress or _log_progress(log)
    debs = [debian.fetch_deb(deb, paths, progress=progress_for(deb.package)) for deb in dk.debs]
    require_space(tmp.parent, sum(d.size for d in dk.debs) * 4, f"unpacking {dk.release}")
    tmp.mkdir(parents=True)
    for deb in debs:
        log(f"pinharness: unpacking {deb.name}")
        proc = subprocess.run([require_tool("dpkg-deb"), "-x", str(deb), str(tmp)],
                              capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            raise_if_enospc(proc.stderr, tmp.parent, f"unpacking {deb.name}", sum(d.size for d in dk.debs) * 4)
            deb.unlink(missing_ok=True)  # a broken .deb is fetched again next time
            raise KernelError(f"dpkg-deb -x {deb.name} failed ({proc.stderr.strip()[-200:]}); "
                              "it was removed from the cache, run again to fetch it anew")
    if not (tmp / "lib" / "modules").exists() and (tmp / "usr" / "lib" / "modules").is_dir():
        (tmp / "lib").mkdir(exist_ok=True)
        (tmp / "lib" / "modules").symlink_to("../usr/lib/modules")
    image, config, moddir = _debian_files(tmp, dk)
    if not image.exists() or not moddir.is_dir():
        raise KernelError(f"the packages of {dk.release} hold no {image.relative_to(tmp)}: "
                          f"an unknown packaging ({', '.join(d.package for d in dk.debs)})")
    depmod(tmp, dk.release)
    (tmp / ".pinharness-ok").write_text(json.dumps({"release": dk.release, "version": dk.version,
                                                     "layout": dk.layout, "suite": dk.suite}))


def from_debian(spec: str, paths: Paths, log=print, refresh: bool = False,
                download_progress: Optional[Callable[[str], debian.Progress]] = None,
                arch: str = arch_mod.DEFAULT) -> Kernel:
    """debian:6.1, debian:7.2, debian:sid, debian:6.1.0-57-amd64: from Debian's signed indexes, cached.
    ``arch`` picks the architecture's packages (arm64: linux-image-*-arm64-unsigned ...)."""
    cache = paths.sub("debian")
    row = arch_mod.get(arch)
    tag = spec if row.name == arch_mod.DEFAULT else f"{spec}@{row.name}"  # the spec as the user gives it
    try:
        dk = debian.resolve(spec, debian.Index(paths, refresh=refresh, log=log, arch=row.debian))
    except KernelError as exc:
        cached = _cached_debian(cache, tag)
        if cached is None:
            raise
        dk = cached
        log(f"pinharness: note: Debian's index cannot be read ({exc}); using the cached {dk.release}")
    root = cache / f"{dk.release}_{dk.version}"  # checked against its stamp on every use, rebuilt if broken
    atomic_artifact(root, lambda tmp: _unpack_debian(dk, tmp, paths, log, download_progress), log=log)
    (cache / f"spec-{tag}.json").write_text(json.dumps({"dir": root.name, **asdict(dk)}, default=list))
    image, config, moddir = _debian_files(root, dk)
    image = kernel_image.bootable(image, row.name, paths.sub("debian-images") / dk.release)
    dbg = debian_dbg_dir(paths, dk.release)
    has_dbg = (dbg / "vmlinux").exists()
    short = spec if re.fullmatch(r'[a-z0-9.]+', spec) else dk.release
    name = f"debian-{short}" if row.name == arch_mod.DEFAULT or short == dk.release else f"debian-{short}-{row.name}"
    return Kernel(name=name, arch=row.name,
                  source=f"debian:{tag}", image=image, release=dk.release, modules_dir=moddir,
                  config_path=config, vmlinux=dbg / "vmlinux" if has_dbg else None,
                  debug_modules_dir=dbg / "modules" if has_dbg and (dbg / "modules").is_dir() else None,
                  extra={"package": dk.debs[0].package, "debian_version": dk.version, "suite": dk.suite,
                         "dbg": asdict(dk.dbg) if dk.dbg else None,
                         "debs": [{"package": d.package, "version": d.version, "url": debian.deb_url(d),
                                   "sha256": d.sha256, "size": d.size} for d in dk.debs]})


def _cached_debian(cache: Path, spec: str) -> Optional[debian.DebianKernel]:
    """The kernel that ``spec`` named when it was last resolved, if it is still unpacked."""
    meta_file = cache / f"spec-{spec}.json"
    if not meta_file.exists():
        return None
    meta = json.loads(meta_file.read_text())
    if cache_problem(cache / meta["dir"]) is not None:  # gone, or not what was unpacked
        return None
    debs = tuple(debian.Deb(**d) for d in meta["debs"])
    dbg = debian.Deb(**meta["dbg"]) if meta.get("dbg") else None
    return debian.DebianKernel(meta["release"], meta["version"], meta["suite"], meta["layout"], debs, dbg)


# Module directories whose debug .ko files are extracted with the -dbg vmlinux: the
# modules that appear in pin-workload traces (the whole set is ~5 GB).
DBG_MODULE_DIRS = ("kernel/fs/ext4", "kernel/fs/xfs", "kernel/fs/jbd2", "kernel/drivers/vfio",
                   "kernel/drivers/infiniband", "kernel/drivers/block")


def debian_dbg_dir(paths: Paths, release: str) -> Path:
    return paths.cache / "debian-dbg" / release


def debian_dbg(kernel: Kernel, paths: Paths, log=print) -> tuple[Path, Path]:
    """vmlinux and the DBG_MODULE_DIRS debug modules from the (big) -dbg package, cached
    per release; the .deb is deleted after extraction. Returns (vmlinux, modules dir)."""
    out = debian_dbg_dir(paths, kernel.release)
    vmlinux, modules = out / "vmlinux", out / "modules"
    if vmlinux.exists():
        return vmlinux, modules
    meta = (kernel.extra or {}).get("dbg")
    if not meta:
        raise KernelError(f"Debian's index lists no linux-image-{kernel.release}-dbg: "
                          "symbolized reports need a Debian kernel that has one (or --vmlinux)")
    dbg = debian.Deb(**meta)
    require_space(paths.cache, dbg.size * 6, f"the {dbg.package} package")
    deb = debian.fetch_deb(dbg, paths, progress=lambda done, total: None)
    log(f"pinharness: extracting vmlinux and {len(DBG_MODULE_DIRS)} module directories from {deb.name}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=out.name + ".", suffix=".tmp", dir=out.parent))
    try:
        # both packagings: vmlinux in usr/lib/debug/boot/ (6.x) or beside the modules (7.x)
        rel = kernel.release
        patterns = [f"*/debug/boot/vmlinux-{rel}", f"*/debug/*lib/modules/{rel}/vmlinux"]
        patterns += [f"*/debug/*lib/modules/{rel}/{d}/*" for d in DBG_MODULE_DIRS]
        fsys = subprocess.Popen([require_tool("dpkg-deb"), "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
        tar = subprocess.run(["tar", "-x", "-C", str(tmp), "--wildcards", "--ignore-failed-read", *patterns],
                             stdin=fsys.stdout, capture_output=True, text=True, timeout=3600)
        fsys.wait(timeout=60)
        found = [p for p in tmp.rglob("vmlinux*") if p.is_file()]
        if not found:
            raise KernelError(f"{deb.name} holds no vmlinux: {tar.stderr.strip()[-200:]}")
        found[0].rename(tmp / "vmlinux")
        mods = [p for p in tmp.rglob(rel) if p.is_dir() and p.parent.name == "modules"]
        if mods:
            mods[0].rename(tmp / "modules")
        shutil.rmtree(tmp / "usr", ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    deb.unlink()  # ~1 GB we no longer need
    return out / "vmlinux", out / "modules"


# --------------------------------------------------------------------------- specs

def _name_for(release: str, prefix: str) -> str:
    return f"{prefix}-{re.sub(r'[^A-Za-z0-9._+-]', '_', release)}"


def resolve(spec: str, paths: Paths, modules: Optional[Path] = None, log=print, refresh: bool = False,
            download_progress: Optional[Callable[[str], debian.Progress]] = None) -> Kernel:
    """'debian:6.1' | 'debian:sid' | 'tree:PATH' | a path to a bzImage/vmlinux/Image (with --modules);
    '@arm64' after any of them names the architecture (x86_64 without one; trees and images are
    also checked against it)."""
    base, row = arch_mod.split_spec(spec)
    named, spec = base != spec, base
    if spec.startswith("debian:"):
        return from_debian(spec.split(":", 1)[1], paths, log=log, refresh=refresh,
                           download_progress=download_progress, arch=row.name)
    arch = row.name if named else None  # without a suffix, a tree or image is what its build is
    if spec.startswith("tree:"):
        return from_tree(Path(spec.split(":", 1)[1]), paths, log=log, arch=arch)
    path = Path(spec.split(":", 1)[1] if spec.startswith("image:") else spec)
    if path.is_dir():
        return from_tree(path, paths, log=log, arch=arch)
    return from_image(path, modules=modules, paths=paths, arch=arch)
