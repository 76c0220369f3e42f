"""What a guest boots from: the cached Debian rootfs, a per-kernel initramfs and
modules disk, and fresh scratch disks with ext4/xfs made on the host.

Cached artifacts are keyed by content (recipe hash, kernel release + image
hash) and never written after they are built: guests get them read-only or
through QEMU's ``snapshot=on``. They are built through ``cache.atomic_artifact``:
complete or absent, stamped (size, sha256) and rebuilt when the stamp does not match.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import lzma
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from harness.errors import HarnessError, ImageError, named_enospc, raise_if_enospc
from harness.vm import arch as arch_mod
from harness.vm import debian
from harness.vm.cache import atomic_artifact
from harness.vm.host import Paths, foreign_arch_ready, privilege_prefix, require_space, require_tool
from harness.vm.kernel import Kernel

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_RECIPE = REPO_ROOT / "guest-images" / "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
ROOTFS_SIZE_SLACK = 1.6  # image size = used bytes * slack + 256 MiB of free room

# Modules the initramfs loads, in order, before it can mount the rootfs (and their
# dependencies from modules.dep): the arch's ``initramfs_modules``. Built-in ones are skipped;
# missing ones are not fatal.
INITRAMFS_MODULES = arch_mod.ARCHES[arch_mod.DEFAULT].initramfs_modules

ROOT_SERIAL = "ph-rootfs"
MODULES_SERIAL = "ph-modules"

# The initramfs' /init (busybox sh): modules, root and modules disks, API file systems, network,
# SSH key, then switch_root to the rootfs' init. Its text is part of every initramfs' cache key.
INITRAMFS_INIT = (Path(__file__).resolve().parent / "initramfs_init.sh").read_text()


# --------------------------------------------------------------------------- recipe / rootfs

@dataclass(frozen=True)
class Recipe:
    """A guest-image recipe: a directory with packages.txt, init and customize.sh."""

    path: Path
    suite: str = "bookworm"
    mirror: str = DEFAULT_MIRROR

    @property
    def packages(self) -> list[str]:
        lines = (self.path / "packages.txt").read_text().splitlines()
        return [p.strip() for p in lines if p.strip() and not p.lstrip().startswith("#")]

    def digest(self) -> str:
        h = hashlib.sha256(f"{self.suite}\n{self.mirror}\n".encode())
        for f in sorted(p for p in self.path.rglob("*") if p.is_file()):
            h.update(f.relative_to(self.path).as_posix().encode() + b"\0" + f.read_bytes())
        return h.hexdigest()[:16]


@dataclass(frozen=True)
class GuestImage:
    rootfs: Path  # ext4 image, read-only on the host
    recipe_digest: str
    build_seconds: float = 0.0
    cached: bool = True
    arch: str = arch_mod.DEFAULT  # the architecture of its programs


def build_rootfs(paths: Paths, recipe: Optional[Recipe] = None, log=print, force: bool = False,
                 timeout: float = 1800, arch: str = arch_mod.DEFAULT) -> GuestImage:
    """The Debian rootfs image of ``recipe`` for ``arch``, built with mmdebstrap unless cached (and
    intact). A foreign architecture is built through qemu-user-static and binfmt_misc (``setup``)."""
    import time

    recipe = recipe or Recipe(DEFAULT_RECIPE, mirror=os.environ.get("PINHARNESS_MIRROR", DEFAULT_MIRROR))
    row = arch_mod.get(arch)
    digest = recipe.digest()
    name = f"{recipe.suite}-{digest}" if row.name == arch_mod.DEFAULT else f"{recipe.suite}-{row.name}-{digest}"
    out_dir = paths.sub("images", name)
    t0 = time.monotonic()
    built: list[bool] = []

    def build(tmp_img: Path) -> None:
        built.append(True)
        _mmdebstrap_image(recipe, digest, out_dir, tmp_img, paths, log, timeout, row)

    with named_enospc(out_dir, "building the guest image", ROOTFS_NEED):
        image = atomic_artifact(out_dir / "rootfs.ext4", build, log=log, force=force)
    return GuestImage(image, digest, build_seconds=time.monotonic() - t0 if built else 0.0, cached=not built,
                      arch=row.name)


ROOTFS_NEED = 3 << 30


def _mmdebstrap_image(recipe: Recipe, digest: str, out_dir: Path, tmp_img: Path, paths: Paths, log,
                      timeout: float, arch: arch_mod.Arch = arch_mod.ARCHES[arch_mod.DEFAULT]) -> None:
    import time

    mmdebstrap = require_tool("mmdebstrap")
    host = arch_mod.host()
    foreign = host is None or host.name != arch.name
    if foreign:
        foreign_arch_ready(arch)  # qemu-user-static registered with binfmt_misc, or a one-line error
    mkfs = require_tool("mkfs.ext4")
    require_space(paths.cache, ROOTFS_NEED, "building the guest image")
    prefix = privilege_prefix()
    t0 = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="rootfs-", dir=paths.sub("tmp")))
    tree = work / "tree"
    try:
        log(f"pinharness: building guest image {recipe.suite}-{digest} for {arch.name} with mmdebstrap "
            + ("(a few minutes: its programs run under qemu-user)" if foreign else "(about a minute)"))
        argv = prefix + [
            "env", f"PINHARNESS_RECIPE={recipe.path}",
            mmdebstrap, "--mode=root", "--variant=minbase", "--include=" + ",".join(recipe.packages),
            *([f"--architectures={arch.debian}"] if foreign else []),
            # Debian's keyring named, so that neither the host's apt sources nor its trusted keys (an
            # Ubuntu host has Ubuntu's) are used
            "--keyring=" + os.environ.get("PINHARNESS_DEBIAN_KEYRING", DEBIAN_KEYRING),
            "--customize-hook=" + f'"{recipe.path}/customize.sh" "$1"',
            recipe.suite, str(tree), recipe.mirror,
        ]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        (out_dir / "mmdebstrap.log").write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            raise_if_enospc(proc.stdout + proc.stderr, work, "building the guest image", ROOTFS_NEED)
            last = (proc.stderr.strip().splitlines() or ["?"])[-1]
            raise ImageError(f"mmdebstrap failed ({last}); full log: {out_dir / 'mmdebstrap.log'}")
        used = int(subprocess.run(prefix + ["du", "-sb", str(tree)], capture_output=True, text=True,
                                  check=True, timeout=600).stdout.split()[0])
        size_mb = int(used * ROOTFS_SIZE_SLACK) // (1 << 20) + 256
        subprocess.run(prefix + [mkfs, "-q", "-F", "-L", "pinharness-root", "-d", str(tree), str(tmp_img),
                                 f"{size_mb}M"], check=True, timeout=600, capture_output=True)
        subprocess.run(prefix + ["chmod", "0444", str(tmp_img)], check=True, timeout=60)
        meta = {"suite": recipe.suite, "digest": digest, "arch": arch.name, "packages": recipe.packages,
                "seconds": round(time.monotonic() - t0, 1), "size_mb": size_mb}
        (out_dir / "image.json").write_text(json.dumps(meta, indent=1))
    finally:
        subprocess.run(prefix + ["rm", "-rf", str(work)], timeout=600)


# --------------------------------------------------------------------------- per-kernel boot files

def _kernel_key(kernel: Kernel) -> str:
    st = kernel.image.stat()
    h = hashlib.sha256(f"{kernel.image}:{st.st_size}:{st.st_mtime_ns}:{kernel.modules_dir}".encode())
    h.update(INITRAMFS_INIT.encode() + repr(arch_mod.get(kernel.arch).initramfs_modules).encode())
    return f"{kernel.release}-{h.hexdigest()[:12]}"


def _norm(name: str) -> str:
    base = os.path.basename(name)
    for suf in (".xz", ".zst", ".gz"):
        if base.endswith(suf):
            base = base[: -len(suf)]
    if base.endswith(".ko"):
        base = base[:-3]
    return base.replace("-", "_")


def module_load_order(modules_dir: Path, wanted: Sequence[str]) -> list[Path]:
    """Module files to insmod for ``wanted``, dependencies first; built-ins and unknowns dropped."""
    dep_file = modules_dir / "modules.dep"
    if not dep_file.exists():
        raise ImageError(f"{dep_file} missing: run depmod for {modules_dir.name}")
    deps: dict[str, tuple[str, list[str]]] = {}
    for line in dep_file.read_text().splitlines():
        if ":" not in line:
            continue
        path, rest = line.split(":", 1)
        deps[_norm(path)] = (path, rest.split())
    order: list[Path] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen or name not in deps:
            return
        seen.add(name)
        path, dlist = deps[name]
        for d in dlist:
            visit(_norm(d))
        order.append(modules_dir / path)

    for w in wanted:
        visit(_norm(w))
    return order


def _read_module(path: Path) -> bytes:
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    if path.name.endswith(".gz"):
        return gzip.decompress(data)
    if path.name.endswith(".zst"):
        return subprocess.run([require_tool("zstd"), "-dc", str(path)], capture_output=True, check=True,
                              timeout=120).stdout
    return data


def _cpio_newc(entries: list[tuple[str, int, bytes]]) -> bytes:
    """A newc cpio archive from (name, mode, data) entries; directories have mode 0o40755."""
    out = io.BytesIO()
    ino = 1
    for name, mode, data in entries + [("TRAILER!!!", 0, b"")]:
        nlink = 2 if mode & 0o040000 else 1
        namez = name.encode() + b"\0"
        hdr = "070701" + "".join(f"{v:08x}" for v in (
            ino, mode, 0, 0, nlink, 0, len(data), 0, 0, 0, 0, len(namez), 0))
        out.write(hdr.encode() + namez)
        out.write(b"\0" * ((4 - (110 + len(namez)) % 4) % 4))
        out.write(data)
        out.write(b"\0" * ((4 - len(data) % 4) % 4))
        ino += 1
    return out.getvalue()


def foreign_packages(packages: Sequence[str], arch: str, paths: Paths, log=print) -> Path:
    """A directory with Debian's ``packages`` (of debian.TOOL_PACKAGES) for ``arch`` unpacked into it:
    fetched by their SHA256 and unpacked once, cached by package versions."""
    row = arch_mod.get(arch)
    index = debian.Index(paths, log=log, arch=row.debian)
    debs = [debian.resolve_tool(p, index) for p in packages]
    key = hashlib.sha256(repr([(d.package, d.version, d.sha256) for d in debs]).encode()).hexdigest()[:12]
    out = paths.sub("foreign") / f"{row.name}-{'+'.join(packages)}-{key}"

    def build(tmp: Path) -> None:
        tmp.mkdir(parents=True)
        for deb in debs:
            proc = subprocess.run([require_tool("dpkg-deb"), "-x", str(debian.fetch_deb(deb, paths)), str(tmp)],
                                  capture_output=True, text=True, timeout=300)
            if proc.returncode != 0:
                raise ImageError(f"dpkg-deb -x {deb.package} failed: {proc.stderr.strip()[-200:]}")

    return atomic_artifact(out, build, log=log)


def guest_busybox(arch: str, paths: Paths, log=print) -> Path:
    """A static busybox that runs in an ``arch`` guest: the host's own for the host's architecture,
    else Debian's busybox-static of that architecture."""
    host = arch_mod.host()
    if host is not None and host.name == arch_mod.get(arch).name:
        return Path(require_tool("busybox"))
    root = foreign_packages(("busybox-static",), arch, paths, log)
    found = next((p for p in (root / "bin" / "busybox", root / "usr" / "bin" / "busybox") if p.exists()), None)
    if found is None:
        raise ImageError(f"Debian's busybox-static for {arch} holds no bin/busybox ({root})")
    return found


def build_initramfs(kernel: Kernel, paths: Paths, log=print) -> Path:
    """busybox + the modules needed to mount the root disk + our /init; cached per kernel."""
    out = paths.sub("initramfs") / f"{_kernel_key(kernel)}.cpio.gz"

    def build(tmp: Path) -> None:
        busybox = guest_busybox(kernel.arch, paths, log).read_bytes()
        entries: list[tuple[str, int, bytes]] = [(d, 0o040755, b"") for d in
                                                 ("bin", "dev", "proc", "sys", "newroot", "modules")]
        entries += [("bin/busybox", 0o100755, busybox), ("init", 0o100755, INITRAMFS_INIT.encode())]
        order: list[str] = []
        if kernel.modules_dir is not None:
            wanted = arch_mod.get(kernel.arch).initramfs_modules
            for i, mod in enumerate(module_load_order(kernel.modules_dir, wanted)):
                fname = f"{i:02d}-{_norm(mod.name)}.ko"
                entries.append((f"modules/{fname}", 0o100644, _read_module(mod)))
                order.append(fname)
        entries.append(("modules/order", 0o100644, ("\n".join(order) + "\n").encode()))
        with open(tmp, "wb") as raw, gzip.GzipFile("", "wb", compresslevel=1, fileobj=raw, mtime=0) as f:
            f.write(_cpio_newc(entries))  # no name, no time: the same kernel gives the same bytes

    with named_enospc(out.parent, f"the initramfs of {kernel.release}"):
        return atomic_artifact(out, build, log=log)


def build_modules_disk(kernel: Kernel, paths: Paths, log=print) -> Optional[Path]:
    """An ext4 image holding the kernel's /lib/modules/<release> (cached); None without modules."""
    if kernel.modules_dir is None:
        return None
    out = paths.sub("modules-disks") / f"{_kernel_key(kernel)}.ext4"
    modules_dir = kernel.modules_dir
    what = f"the modules disk of {kernel.release}"

    def build(tmp: Path) -> None:
        mkfs = require_tool("mkfs.ext4")
        used = sum(p.stat().st_size for p in modules_dir.rglob("*") if p.is_file() and not p.is_symlink())
        size_mb = int(used * 1.3) // (1 << 20) + 64
        require_space(out.parent, size_mb << 20, what)
        proc = subprocess.run([mkfs, "-q", "-F", "-L", "ph-modules", "-d", str(modules_dir), str(tmp),
                               f"{size_mb}M"], capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise_if_enospc(proc.stderr + proc.stdout, out.parent, what, size_mb << 20)
            raise ImageError(f"mkfs.ext4 of the modules disk failed: {proc.stderr.strip()[:200]}")
        os.chmod(tmp, 0o444)

    with named_enospc(out.parent, what):
        return atomic_artifact(out, build, log=log)


# --------------------------------------------------------------------------- scratch disks

# fs type -> (mkfs tool, argv before the device, check tool argv)
MKFS: dict[str, tuple[str, list[str]]] = {
    "ext4": ("mkfs.ext4", ["-q", "-F"]),
    "xfs": ("mkfs.xfs", ["-q", "-f"]),
}
FSCK: dict[str, list[str]] = {
    "ext4": ["e2fsck", "-fn"],
    "xfs": ["xfs_repair", "-n"],
}


@dataclass
class Disk:
    """A disk image attached to a guest as virtio-blk with ``serial``."""

    path: Path
    serial: str
    fs: Optional[str] = None
    readonly: bool = False
    snapshot: bool = False  # QEMU snapshot=on: the file is never written
    fmt: str = "raw"
    extra: dict = field(default_factory=dict)  # extra -blockdev/-drive properties (e.g. throttling)


def make_scratch_disk(directory: Path, fs: str, size_mb: int = 512, mkfs_options: Sequence[str] = (),
                      serial: str = "scratch0") -> Disk:
    """A fresh sparse image with ``fs`` made on the host with ``mkfs_options``."""
    if fs not in MKFS:
        raise HarnessError(f"unknown file system {fs!r}: use one of {', '.join(MKFS)}")
    tool, base = MKFS[fs]
    path = Path(directory) / f"{serial}.{fs}.img"
    require_space(path.parent, 64 << 20, "a scratch disk")
    with named_enospc(path.parent, f"the {fs} scratch disk", 64 << 20):
        with open(path, "wb") as f:
            f.truncate(size_mb << 20)
    proc = subprocess.run([require_tool(tool), *base, *mkfs_options, str(path)], capture_output=True, text=True,
                          timeout=300)
    if proc.returncode != 0:
        path.unlink(missing_ok=True)
        raise_if_enospc(proc.stderr + proc.stdout, path.parent, f"the {fs} scratch disk", 64 << 20)
        raise HarnessError(f"{tool} {' '.join(mkfs_options)} failed: {proc.stderr.strip()[:200]}")
    return Disk(path=path, serial=serial, fs=fs)


def fsck(disk: Disk, timeout: float = 300) -> tuple[bool, str]:
    """Run the read-only checker of the disk's fs on the host; (clean, output)."""
    argv = FSCK[disk.fs or "ext4"]
    proc = subprocess.run([require_tool(argv[0]), *argv[1:], str(disk.path)], capture_output=True, text=True,
                          timeout=timeout)
    return proc.returncode == 0, proc.stdout + proc.stderr
