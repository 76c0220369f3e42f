"""Host facts and host setup: which tools exist, where the cache lives, installing what is missing.

Nothing here is global state: callers pass a ``Paths`` around.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError, NoSpace, ToolMissing

# tool -> Debian package that provides it (the host-setup step installs these)
HOST_TOOLS: dict[str, str] = {
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-img": "qemu-utils",
    "mkfs.ext4": "e2fsprogs",
    "e2fsck": "e2fsprogs",
    "mkfs.xfs": "xfsprogs",
    "xfs_repair": "xfsprogs",
    "mmdebstrap": "mmdebstrap",
    "busybox": "busybox-static",
    "cpio": "cpio",
    "depmod": "kmod",
    "xz": "xz-utils",
    "zstd": "zstd",
    "gcc": "gcc",
    "ssh-keygen": "openssh-client",
    "dpkg-deb": "dpkg",
    "gpgv": "gpgv",
    # arm64 guests: their QEMU, their programs run under qemu-user while the image is built, the cross compiler
    "qemu-system-aarch64": "qemu-system-arm",
    "qemu-aarch64-static": "qemu-user-static",
    "update-binfmts": "binfmt-support",
    "arch-test": "arch-test",
    "aarch64-linux-gnu-gcc": "gcc-aarch64-linux-gnu",
}

# Extra packages the host wants that provide no single tool we probe for.
HOST_EXTRA_PACKAGES = ["debian-archive-keyring", "libc6-dev", "libibverbs-dev", "linux-libc-dev", "ccache", "make",
                       "bc", "flex", "bison", "libelf-dev", "libssl-dev", "libc6-dev-arm64-cross"]
BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")


@dataclass(frozen=True)
class Paths:
    """Where pinharness keeps its caches (downloads, images, builds)."""

    cache: Path

    @classmethod
    def default(cls) -> "Paths":
        env = os.environ.get("PINHARNESS_CACHE")
        if env:
            return cls(Path(env).expanduser().resolve())
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        return cls(Path(base) / "pinharness")

    def sub(self, *parts: str) -> Path:
        path = self.cache.joinpath(*parts)
        path.mkdir(parents=True, exist_ok=True)
        return path


def which(tool: str) -> str | None:
    found = shutil.which(tool)
    if found:
        return found
    for d in ("/usr/sbin", "/sbin", "/usr/bin", "/bin"):
        cand = os.path.join(d, tool)
        if os.access(cand, os.X_OK):
            return cand
    return None


def require_tool(tool: str) -> str:
    """Path of ``tool`` or a one-line error saying how to install it."""
    path = which(tool)
    if path is None:
        pkg = HOST_TOOLS.get(tool, tool)
        raise ToolMissing(
            f"{tool} not found: run `python -m harness setup` (installs Debian package {pkg})"
        )
    return path


def missing_packages() -> list[str]:
    missing = sorted({pkg for tool, pkg in HOST_TOOLS.items() if which(tool) is None})
    return missing


def privilege_prefix() -> list[str]:
    """[] as root, ['sudo', '-n'] when passwordless sudo works, else a clear error."""
    if os.geteuid() == 0:
        return []
    sudo = shutil.which("sudo")
    if sudo and subprocess.run([sudo, "-n", "true"], capture_output=True, timeout=30).returncode == 0:
        return [sudo, "-n"]
    raise HarnessError(
        "host setup needs root: run as root or configure passwordless sudo "
        "(or install the packages yourself: apt-get install " + " ".join(sorted(set(HOST_TOOLS.values()))) + ")"
    )


def install_packages(packages: list[str], log=print, timeout: float = 1800) -> None:
    """apt-get install the given Debian packages (no recommends)."""
    if not packages:
        return
    prefix = privilege_prefix()
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    log(f"pinharness: installing {' '.join(packages)}")
    subprocess.run(prefix + ["apt-get", "update", "-qq"], check=True, env=env, timeout=timeout)
    subprocess.run(
        prefix + ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages],
        check=True, env=env, timeout=timeout, stdout=subprocess.DEVNULL,
    )


def installed_packages(dpkg_query: str) -> set[str]:
    """Packages whose `dpkg-query -W -f '${Package} ${Status}'` status is "install ok installed"
    (not "unknown ok not-installed", which also ends in "installed")."""
    return {line.split()[0] for line in dpkg_query.splitlines() if line.split()[1:] == ["install", "ok", "installed"]}


def setup(log=print, extra: bool = True) -> list[str]:
    """Install every missing host package; return what was installed."""
    if sys.platform != "linux":
        raise HarnessError("pinharness needs a Linux host (Debian/Ubuntu): this is " + sys.platform)
    if not which("apt-get"):
        raise HarnessError("apt-get not found: host setup supports Debian/Ubuntu; install "
                           + " ".join(sorted(set(HOST_TOOLS.values()))) + " yourself")
    want = missing_packages()
    if extra:
        have = subprocess.run(["dpkg-query", "-W", "-f", "${Package} ${Status}\n", *HOST_EXTRA_PACKAGES],
                              capture_output=True, text=True, timeout=60).stdout
        installed = installed_packages(have)
        want += [p for p in HOST_EXTRA_PACKAGES if p not in installed]
    try:
        install_packages(want, log=log)
    except subprocess.CalledProcessError as exc:
        raise HarnessError(f"apt-get failed (exit {exc.returncode}) installing {' '.join(want)}: "
                           "check the apt sources and network, then re-run `python -m harness setup`")
    register_foreign_arches(log)
    return want


def foreign_arch_ready(arch, register: bool = True) -> None:
    """Programs of ``arch`` (a harness.vm.arch.Arch) run on this host through qemu-user and binfmt_misc,
    as mmdebstrap needs to build its guest image; mounts binfmt_misc and enables the qemu-user handler
    when it can (as root), else a one-line error naming the fix."""
    tool = which("arch-test")
    if tool is None:
        raise ToolMissing(f"arch-test not found: an {arch.name} guest image needs qemu-user-static, binfmt-support "
                          "and arch-test: run `python -m harness setup`")

    def test() -> str:
        proc = subprocess.run([tool, arch.debian], capture_output=True, text=True, timeout=60)
        said = (proc.stdout + proc.stderr).strip().splitlines() or [f"arch-test exited {proc.returncode}"]
        return "" if proc.returncode == 0 else said[-1]

    problem = test()
    if not problem:
        return
    if register and os.geteuid() == 0:
        if not (BINFMT_DIR / "register").exists():
            subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT_DIR)], capture_output=True,
                           timeout=30)
        updater = which("update-binfmts")
        if updater:
            subprocess.run([updater, "--enable", f"qemu-{arch.uname}"], capture_output=True, timeout=60)
        problem = test() if (BINFMT_DIR / "register").exists() else f"binfmt_misc cannot be mounted at {BINFMT_DIR}"
        if not problem:
            return
    raise HarnessError(f"{arch.name} programs do not run on this host ({problem}): an {arch.name} guest image needs "
                       f"qemu-user-static registered with binfmt_misc: run `python -m harness setup` as root "
                       "(in a container, binfmt_misc must be mountable)")


def register_foreign_arches(log=print) -> None:
    """`setup`'s last step: every foreign architecture the harness knows runs through qemu-user."""
    from harness.vm import arch as arch_mod

    host = arch_mod.host()
    for row in arch_mod.ARCHES.values():
        if host is not None and row.name == host.name:
            continue
        try:
            foreign_arch_ready(row)
        except HarnessError as exc:
            log(f"pinharness: note: {exc}")


def free_bytes(path: Path) -> int:
    path.mkdir(parents=True, exist_ok=True)
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def require_space(path: Path, need: int, what: str) -> None:
    have = free_bytes(path)
    if have < need:
        raise NoSpace(
            f"not enough disk space for {what} in {path}: {have >> 20} MiB free, "
            f"{need >> 20} MiB needed; free some space or set PINHARNESS_CACHE to a bigger disk"
        )
