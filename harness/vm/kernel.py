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
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from harness.errors import KernelError, raise_if_enospc
from harness.vm import kernel_image
from harness.vm.cache import atomic_artifact
from harness.vm.host import Paths, require_space, require_tool


# The default kernels: the last Debian line that allows long-term pins of
# ext4/xfs shared mappings (6.1) and one that refuses them (6.12, >= v6.5).
DEFAULT_KERNELS = ("debian:6.1", "debian:6.12")


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
        return {"name": self.name, "source": self.source, "image": str(self.image), "release": self.release,
                "modules_dir": str(self.modules_dir) if self.modules_dir else None,
                "vmlinux": str(self.vmlinux) if self.vmlinux else None,
                "config": str(self.config_path) if self.config_path else None}


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
               vmlinux: Optional[Path] = None) -> Kernel:
    path = Path(path).expanduser().resolve()
    kind = identify_image(path)
    if kind == "elf":
        info = elf_info(path)
        release = info["release"] or ""
        vmlinux = vmlinux or path
    else:
        release = bzimage_release(path) or ""
    if modules is not None:
        modules = Path(modules).expanduser().resolve()
        if not modules.is_dir():
            raise KernelError(f"--modules {modules} is not a directory: pass the lib/modules/<release> directory")
        if (modules / "lib" / "modules").is_dir():  # an INSTALL_MOD_PATH root was given
            subs = sorted((modules / "lib" / "modules").iterdir())
            modules = subs[0] if subs else modules
        release = release or modules.name
    if config is None:
        for cand in (path.parent / f"config-{release}", path.parent / ".config"):
            if cand.exists():
                config = cand
                break
    return Kernel(name=_name_for(release or path.name, "image"), source=f"image:{path}", image=path,
                  release=release, modules_dir=modules, config_path=config, vmlinux=vmlinux)


# --------------------------------------------------------------------------- trees

def from_tree(tree: Path, paths: Paths, log=print) -> Kernel:
    """A built kernel tree or O= build directory: bzImage, vmlinux, .config, modules."""
    tree = Path(tree).expanduser().resolve()
    if not tree.is_dir():
        raise KernelError(f"--kernel-tree {tree} is not a directory")
    bz = tree / "arch" / "x86" / "boot" / "bzImage"
    if not bz.exists():
        if (tree / "Makefile").exists() and (tree / "Kconfig").exists():
            raise KernelError(
                f"kernel tree {tree} has no build (arch/x86/boot/bzImage missing): build it "
                "(`python -m harness build --tree {0}` or `make -j$(nproc) bzImage modules`) "
                "or pass its O= build directory".format(tree))
        raise KernelError(f"{tree} is not a kernel tree or build directory (no Makefile/Kconfig, no bzImage)")
    identify_image(bz)
    release_file = tree / "include" / "config" / "kernel.release"
    release = release_file.read_text().strip() if release_file.exists() else (bzimage_release(bz) or "")
    config = tree / ".config"
    vmlinux = tree / "vmlinux" if (tree / "vmlinux").exists() else None
    cfg = parse_config(config.read_text()) if config.exists() else {}
    modules_dir = None
    if cfg.get("CONFIG_MODULES") == "y" and (tree / "modules.order").exists():
        modules_dir = _install_tree_modules(tree, release, bz, paths, log)
    return Kernel(name=_name_for(release, "tree"), source=f"tree:{tree}", image=bz, release=release,
                  modules_dir=modules_dir, config_path=config if config.exists() else None, vmlinux=vmlinux)


def _install_tree_modules(tree: Path, release: str, bz: Path, paths: Paths, log) -> Path:
    """`make modules_install` into the cache, keyed by the build; reused when unchanged."""
    h = hashlib.sha256()
    for p in (bz, tree / "modules.order"):
        st = p.stat()
        h.update(f"{p}:{st.st_size}:{st.st_mtime_ns}".encode())
    root = paths.sub("tree-modules") / f"{release}-{h.hexdigest()[:12]}"

    def build(tmp: Path) -> None:
        log(f"pinharness: installing modules of {tree} into {root}")
        proc = subprocess.run(["make", "-s", "-C", str(tree), "modules_install", f"INSTALL_MOD_PATH={tmp}"],
                              capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            raise_if_enospc(proc.stderr + proc.stdout, root.parent, f"the modules of {tree}")
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
            raise KernelError(f"`make modules_install` failed in {tree}: {tail[0]}")
        if not (tmp / "lib" / "modules" / release / "modules.dep").exists():
            depmod(tmp, release)

    atomic_artifact(root, build, log=log)
    return root / "lib" / "modules" / release


# --------------------------------------------------------------------------- Debian

# A Debian release line ("6.1", "6.12") -> the package-name regex of its generic amd64 flavour.
DEBIAN_FLAVOUR = "amd64"


def _debian_package_regex(line: str) -> re.Pattern:
    esc = re.escape(line)
    return re.compile(rf"^linux-image-({esc}(?:\.\d+)*(?:-\d+|\+deb\d+))-{DEBIAN_FLAVOUR}-unsigned$")


def _apt_versions(packages: list[str]) -> dict[str, str]:
    out = subprocess.run(["apt-cache", "show", "--no-all-versions", *packages],
                         capture_output=True, text=True, timeout=120).stdout
    versions: dict[str, str] = {}
    pkg = None
    for line in out.splitlines():
        if line.startswith("Package: "):
            pkg = line.split(": ", 1)[1]
        elif line.startswith("Version: ") and pkg:
            versions[pkg] = line.split(": ", 1)[1]
    return versions


def _dpkg_cmp(a: str, b: str) -> int:
    if a == b:
        return 0
    lt = subprocess.run(["dpkg", "--compare-versions", a, "lt", b], timeout=30).returncode == 0
    return -1 if lt else 1


def resolve_debian_package(line: str) -> tuple[str, str]:
    """("linux-image-6.1.0-56-amd64-unsigned", "6.1.0-56-amd64") for line "6.1"."""
    require_tool("apt-cache")
    if re.fullmatch(r"\d+\.\d+(\.\d+)*(-\d+|\+deb\d+)-" + DEBIAN_FLAVOUR, line):
        pkg = f"linux-image-{line}-unsigned"  # an exact release
        if not _apt_versions([pkg]):
            raise KernelError(f"Debian has no package {pkg}: check the release, or run `apt-get update`")
        return pkg, line
    if not re.fullmatch(r"\d+\.\d+", line):
        raise KernelError(f"debian:{line} is not a kernel line: use e.g. debian:6.1, debian:6.12 "
                          f"or an exact release such as debian:6.1.0-56-amd64")
    names = subprocess.run(["apt-cache", "pkgnames", f"linux-image-{line}"],
                           capture_output=True, text=True, timeout=120).stdout.split()
    rx = _debian_package_regex(line)
    cands = [n for n in names if rx.match(n)]
    if not cands:
        raise KernelError(
            f"Debian has no linux-image for {line} ({DEBIAN_FLAVOUR}) in apt's lists: "
            "run `apt-get update` (or `python -m harness setup`), or pick another line (debian:6.1, debian:6.12)")
    versions = _apt_versions(cands)
    best = max(versions, key=functools.cmp_to_key(lambda a, b: _dpkg_cmp(versions[a], versions[b])))
    return best, rx.match(best).group(1) + "-" + DEBIAN_FLAVOUR


def apt_download(package: str, dest: Path, timeout: float = 1800) -> Path:
    """Download one .deb into dest (cached); returns its path."""
    dest.mkdir(parents=True, exist_ok=True)
    have = sorted(dest.glob(f"{package}_*.deb"))
    if have:
        return have[-1]
    require_space(dest, 2 << 30, f"downloading {package}")
    proc = subprocess.run(["apt-get", "download", package], cwd=dest, capture_output=True, text=True,
                          timeout=timeout)
    got = sorted(dest.glob(f"{package}_*.deb"))
    if proc.returncode != 0 or not got:
        msg = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise KernelError(f"apt-get download {package} failed: {msg}; check network/apt sources")
    return got[-1]


def depmod(root: Path, release: str) -> None:
    depmod_bin = require_tool("depmod")
    proc = subprocess.run([depmod_bin, "-b", str(root), release], capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise KernelError(f"depmod failed for {release}: {proc.stderr.strip()[:200]}")


def from_debian(line: str, paths: Paths, log=print) -> Kernel:
    """debian:6.1 / debian:6.12: the newest generic amd64 kernel of that line, cached."""
    cache = paths.sub("debian")
    try:
        package, release = resolve_debian_package(line)
    except KernelError:
        cached = _cached_debian(cache, line)
        if cached is None:
            raise
        package, release = cached
        log(f"pinharness: apt lookup failed, using cached {package}")
    root = cache / package
    stamp = root / ".pinharness-ok"
    if not stamp.exists():
        deb = apt_download(package, paths.sub("debs"))
        log(f"pinharness: unpacking {deb.name}")
        tmp = cache / (package + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        subprocess.run([require_tool("dpkg-deb"), "-x", str(deb), str(tmp)], check=True, timeout=900)
        moddir = tmp / "lib" / "modules" / release
        if not moddir.is_dir():  # usrmerge layouts
            moddir = tmp / "usr" / "lib" / "modules" / release
            if moddir.is_dir():
                (tmp / "lib").mkdir(exist_ok=True)
                (tmp / "lib" / "modules").symlink_to("../usr/lib/modules")
        depmod(tmp, release)
        (tmp / ".pinharness-ok").write_text(json.dumps({"package": package, "release": release, "line": line}))
        shutil.rmtree(root, ignore_errors=True)
        tmp.rename(root)
    dbg = debian_dbg_dir(paths, release)
    has_dbg = (dbg / "vmlinux").exists()
    return Kernel(name=f"debian-{line if re.fullmatch(r'[0-9.]+', line) else release}",
                  source=f"debian:{line}", image=root / "boot" / f"vmlinuz-{release}", release=release,
                  modules_dir=root / "lib" / "modules" / release, config_path=root / "boot" / f"config-{release}",
                  vmlinux=dbg / "vmlinux" if has_dbg else None,
                  debug_modules_dir=dbg / "modules" if has_dbg and (dbg / "modules").is_dir() else None,
                  extra={"package": package})


def _cached_debian(cache: Path, line: str) -> Optional[tuple[str, str]]:
    found = []
    for stamp in cache.glob("*/.pinharness-ok"):
        meta = json.loads(stamp.read_text())
        if meta.get("line") == line:
            found.append((meta["package"], meta["release"]))
    return sorted(found)[-1] if found else None


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
    package = f"linux-image-{kernel.release}-dbg"
    require_space(paths.cache, 8 << 30, f"the {package} package")
    deb = apt_download(package, paths.sub("debs"), timeout=3600)
    log(f"pinharness: extracting vmlinux and {len(DBG_MODULE_DIRS)} module directories from {deb.name}")
    tmp = out.with_suffix(".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    prefix = f"./usr/lib/debug/lib/modules/{kernel.release}/"
    members = [f"./usr/lib/debug/boot/vmlinux-{kernel.release}"] + [prefix + d for d in DBG_MODULE_DIRS]
    fsys = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE)
    tar = subprocess.run(["tar", "-x", "-C", str(tmp), "--ignore-failed-read", *members], stdin=fsys.stdout,
                         capture_output=True, text=True, timeout=3600)
    fsys.wait(timeout=60)
    got = tmp / members[0]
    if not got.exists():
        raise KernelError(f"{deb.name} holds no {members[0]}: {tar.stderr.strip()[-200:]}")
    got.rename(tmp / "vmlinux")
    mods = tmp / prefix
    (mods if mods.is_dir() else tmp / "modules-missing").rename(tmp / "modules")
    shutil.rmtree(tmp / "usr", ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    deb.unlink()  # 860 MB we no longer need
    return out / "vmlinux", out / "modules"


# --------------------------------------------------------------------------- specs

def _name_for(release: str, prefix: str) -> str:
    return f"{prefix}-{re.sub(r'[^A-Za-z0-9._+-]', '_', release)}"


def resolve(spec: str, paths: Paths, modules: Optional[Path] = None, log=print) -> Kernel:
    """'debian:6.1' | 'tree:PATH' | a path to a bzImage/vmlinux."""
    if spec.startswith("debian:"):
        return from_debian(spec.split(":", 1)[1], paths, log=log)
    if spec.startswith("tree:"):
        return from_tree(Path(spec.split(":", 1)[1]), paths, log=log)
    path = Path(spec.split(":", 1)[1] if spec.startswith("image:") else spec)
    if path.is_dir():
        return from_tree(path, paths, log=log)
    return from_image(path, modules=modules)
