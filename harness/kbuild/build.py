"""Kernel builds from a source tree: config fragments → .config → bzImage, modules, vmlinux.

Always out of tree (``O=``): the user's source tree is only read. The config is
``make ARCH=x86_64 tinyconfig`` (the smallest x86_64 kernel: fast to build and
to bisect) with the ``kernel-configs/`` fragments merged on top by the tree's
own ``scripts/kconfig/merge_config.sh -m`` and settled by ``olddefconfig``.
Every requested option that did not survive is reported with its missing
dependency (harness.kbuild.kconfig). Builds are incremental: one stable ``O=`` per
tree and fragment set, an unchanged .config keeps its mtime, and the build
is reproducible (fixed timestamp/user/host/version), so ccache hits and an
unchanged commit gives a byte-identical bzImage (what the bisect relies on).
"""
from __future__ import annotations

import collections
import hashlib
import os
import re
import resource
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

from harness.kbuild import kconfig
from harness.errors import HarnessError
from harness.vm import arch as arch_mod
from harness.vm.host import Paths, free_bytes, require_tool
from harness.vm.kernel import Kernel, from_tree, parse_config

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO_ROOT / "kernel-configs"
DEFAULT_CONFIGS = ("base", "pins")
ARCH = "x86_64"  # the default (a row of harness.vm.arch); BuildRequest.arch picks another
SRCARCH = "x86"
BASE_TARGET = "tinyconfig"  # what the fragments are merged onto
TARGETS = ("bzImage", "modules")  # x86_64's; vmlinux is the image's prerequisite
MIN_FREE = 6 << 30  # a DWARF build of base+pins is ~3 GiB; leave room
PROGRESS_EVERY = 15.0  # seconds between compiler-progress lines
TAIL_LINES = 40

# Reproducible builds: the same sources give the same bzImage (and ccache hits).
REPRODUCIBLE_ENV = {
    "KBUILD_BUILD_TIMESTAMP": "1970-01-01 00:00:00 UTC",
    "KBUILD_BUILD_USER": "pinharness",
    "KBUILD_BUILD_HOST": "pinharness",
    "KBUILD_BUILD_VERSION": "1",
    # DWARF puts the working directory into every object; ccache would hash it and
    # miss in every other O=. The O= stays stable per tree anyway; this covers moves.
    "CCACHE_NOHASHDIR": "1",
}

# Lines of make output worth a progress note: "  CC      mm/gup.o"
_STEP = re.compile(r"^\s{2}([A-Z][A-Z0-9_]*(?: \[M\])?)\s+(\S+)")
_ERROR = re.compile(r"(error:|Error \d|\*\*\*|No space left on device|undefined reference|fatal:)")


class BuildError(HarnessError):
    """The kernel did not build (configuration or compile failure)."""


@dataclass(frozen=True)
class BuildRequest:
    tree: Path
    out: Path
    configs: tuple[str, ...] = DEFAULT_CONFIGS
    jobs: int = 0  # 0: os.cpu_count()
    ccache: bool = True
    timeout: float = 4 * 3600.0
    config_dir: Path = CONFIG_DIR
    env: tuple[tuple[str, str], ...] = ()  # extra environment for make (bench: CCACHE_DIR, CCACHE_RECACHE)
    arch: str = ARCH  # x86_64 | arm64: arm64 is cross-compiled (CROSS_COMPILE=aarch64-linux-gnu-), with arm64.config

    @property
    def row(self) -> arch_mod.Arch:
        return arch_mod.get(self.arch)

    @property
    def targets(self) -> tuple[str, ...]:
        return (Path(self.row.tree_image).name, "modules")


@dataclass
class BuildResult:
    out: Path
    fragments: list[Path]
    missing: list[kconfig.MissingOption] = field(default_factory=list)
    config_changed: bool = False
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    ccache: bool = False
    image: Optional[Path] = None

    def to_dict(self) -> dict:
        return {"out": str(self.out), "fragments": [str(f) for f in self.fragments],
                "missing": [m.line() for m in self.missing], "config_changed": self.config_changed,
                "seconds": round(self.seconds, 1), "cpu_seconds": round(self.cpu_seconds, 1),
                "ccache": self.ccache, "image": str(self.image) if self.image else None}


# --------------------------------------------------------------------------- inputs

def fragment_paths(names: Sequence[str], config_dir: Path = CONFIG_DIR) -> list[Path]:
    """'base', 'pins', 'debug' (kernel-configs/NAME.config) or paths to fragment files."""
    out = []
    for name in names:
        cand = Path(name).expanduser()
        if not cand.is_file():
            cand = config_dir / f"{name}.config"
        if not cand.is_file():
            have = ", ".join(sorted(p.stem for p in config_dir.glob("*.config")))
            raise HarnessError(f"no config fragment {name!r}: use one of {have} or a path to a fragment file")
        out.append(cand.resolve())
    return out


def build_fragments(req: BuildRequest) -> list[Path]:
    """The fragments of ``req``, then its architecture's own when it has one (kernel-configs/arm64.config:
    the virt machine's console, PCI host and SMMUv3); options of the shared fragments that the
    architecture lacks (PVH, INTEL_IOMMU...) are reported as missing, with kconfig's reason."""
    fragments = fragment_paths(req.configs, req.config_dir)
    own = req.config_dir / f"{req.row.name}.config"
    return fragments + ([own.resolve()] if own.is_file() and own.resolve() not in fragments else [])


def check_tree(tree: Path, arch: str = ARCH) -> Path:
    """The resolved source tree, or a one-line error: not a kernel tree, or built in place."""
    tree = Path(tree).expanduser().resolve()
    srcarch = arch_mod.get(arch).srcarch
    if not tree.is_dir():
        raise HarnessError(f"--tree {tree} is not a directory")
    if not ((tree / "Makefile").is_file() and (tree / "Kconfig").is_file() and (tree / "arch" / srcarch).is_dir()):
        raise HarnessError(f"{tree} is not a kernel source tree (no Makefile, Kconfig and arch/{srcarch}/)")
    if not (tree / "scripts" / "kconfig" / "merge_config.sh").is_file():
        raise HarnessError(f"{tree} has no scripts/kconfig/merge_config.sh: a kernel tree of v3.x or later is needed")
    if (tree / ".config").exists() or (tree / "include" / "config").is_dir():
        raise HarnessError(f"{tree} has an in-tree build (.config): builds go to an O= directory and Kbuild "
                           f"refuses a dirty source tree; run `make mrproper` in {tree} first")
    return tree


def default_out(tree: Path, configs: Sequence[str], paths: Paths, arch: str = ARCH) -> Path:
    """One stable O= directory per tree, fragment set and architecture: incremental builds and ccache hits."""
    tree = Path(tree).resolve()
    key = hashlib.sha256(str(tree).encode()).hexdigest()[:10]
    # "-arm64", not "@arm64": `tree:<this directory>` must not read as a kernel spec's arch suffix
    label = "+".join(Path(c).stem for c in configs) + ("" if arch_mod.get(arch).name == ARCH else f"-{arch}")
    return paths.cache / "builds" / f"{tree.name}-{key}-{label}"


# --------------------------------------------------------------------------- make

def make_argv(req: BuildRequest, targets: Sequence[str], ccache: Optional[str] = None) -> list[str]:
    row = req.row
    argv = ["make", "-C", str(req.tree), f"O={req.out}", f"ARCH={row.kbuild_arch}", "LOCALVERSION="]
    if row.cross_prefix:
        argv.append(f"CROSS_COMPILE={row.cross_prefix}")
    if ccache:
        argv.append(f"CC={ccache} {row.cross_prefix}gcc")
    return argv + list(targets)


def build_env(base: Optional[dict] = None, extra: Sequence[tuple[str, str]] = ()) -> dict:
    env = dict(os.environ if base is None else base)
    env.update(REPRODUCIBLE_ENV)
    env.update(dict(extra))
    env.pop("KCONFIG_CONFIG", None)
    env.pop("ARCH", None)
    return env


# make's own "Error N" / "Leaving directory" lines say nothing: the first line that names a cause does
FIRST_ERROR = re.compile(r"not found|No such file|error:|Error:|cannot|\*\*\* [^\[]")


def first_error(output: str) -> str:
    """The line of a failed make that names the cause (``flex: not found``), else the last line."""
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    cause = next((ln for ln in lines if FIRST_ERROR.search(ln) and not ln.startswith("make")), None)
    return cause or (lines[-1] if lines else "")


def _run_quiet(argv: list[str], cwd: Path, what: str, timeout: float = 600, env: Sequence = ()) -> str:
    try:
        proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                              env=build_env(extra=env))
    except subprocess.TimeoutExpired:
        raise BuildError(f"{what} timed out after {timeout:.0f}s")
    if proc.returncode != 0:
        raise BuildError(f"{what} failed: {first_error(proc.stderr + proc.stdout) or f'exit {proc.returncode}'}")
    return proc.stdout + proc.stderr


# --------------------------------------------------------------------------- configure

def configure(req: BuildRequest, fragments: list[Path], log: Callable[[str], None] = print,
              index: Optional[kconfig.KconfigIndex] = None) -> tuple[bool, list[kconfig.MissingOption]]:
    """Write O=/.config from tinyconfig + fragments; (changed?, options that did not survive)."""
    out = req.out
    out.mkdir(parents=True, exist_ok=True)
    cfg = out / ".config"
    old = cfg.read_bytes() if cfg.exists() else None
    old_stat = cfg.stat() if cfg.exists() else None
    log(f"pinharness: build: config {BASE_TARGET} + {', '.join(f.stem for f in fragments)} -> {cfg}")
    _run_quiet(make_argv(req, [BASE_TARGET]), out, f"make {BASE_TARGET}", env=req.env)
    merge = req.tree / "scripts" / "kconfig" / "merge_config.sh"
    # -m: merge only; run inside O= because the script makes its temp files in ".".
    _run_quiet(["bash", str(merge), "-m", "-O", str(out), str(cfg), *map(str, fragments)], out, "merge_config.sh",
               env=req.env)
    for opt, before, after, frag in kconfig.fragment_overrides([(f.stem, f.read_text()) for f in fragments]):
        log(f"pinharness: build: {frag} overrides {opt}={before} with {after}")
    _run_quiet(make_argv(req, ["olddefconfig"]), out, "make olddefconfig", env=req.env)
    new = cfg.read_bytes()
    changed = new != old
    if not changed and old_stat is not None:  # keep the mtime: nothing to reconfigure
        os.utime(cfg, ns=(old_stat.st_atime_ns, old_stat.st_mtime_ns))
    requested = kconfig.merge_fragments(f.read_text() for f in fragments)
    final = parse_config(new.decode(errors="replace"))
    unsatisfied = {k: v for k, v in requested.items() if not kconfig.satisfied(v, final.get(k))}
    missing: list[kconfig.MissingOption] = []
    if unsatisfied:
        index = index or kconfig.build_index(req.tree, req.row.srcarch, req.row.kbuild_arch)
        missing = kconfig.missing_options(unsatisfied, final, index)
    if final.get("CONFIG_64BIT") != "y":
        raise BuildError(f"{cfg} is not a 64-bit {req.row.srcarch} config: the guest userspace is 64-bit")
    return changed, missing


# --------------------------------------------------------------------------- build

def _ccache() -> Optional[str]:
    return shutil.which("ccache")


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run_make(req: BuildRequest, targets: Sequence[str], log: Callable[[str], None] = print,
             ccache: Optional[str] = None) -> None:
    """make the targets with throttled progress; BuildError with the compiler's last lines."""
    jobs = req.jobs or os.cpu_count() or 1
    argv = make_argv(req, targets, ccache)
    argv.insert(1, f"-j{jobs}")
    log_path = req.out / "pinharness-build.log"
    tail: collections.deque = collections.deque(maxlen=TAIL_LINES)
    errors: list[str] = []
    steps = 0
    last_note = time.monotonic()
    proc = subprocess.Popen(argv, cwd=req.out, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            errors="replace", env=build_env(extra=req.env), start_new_session=True)
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        _kill_group(proc)

    timer = threading.Timer(req.timeout, kill)
    timer.daemon = True
    timer.start()
    try:
        with open(log_path, "w") as logf:
            for line in proc.stdout:
                logf.write(line)
                line = line.rstrip("\n")
                tail.append(line)
                if _ERROR.search(line) and len(errors) < 20:
                    errors.append(line.strip())
                m = _STEP.match(line)
                if m:
                    steps += 1
                    now = time.monotonic()
                    if now - last_note >= PROGRESS_EVERY:
                        log(f"pinharness: build: {steps} steps ({m.group(1)} {m.group(2)})")
                        last_note = now
        rc = proc.wait(timeout=60)
    except BaseException:
        _kill_group(proc)
        raise
    finally:
        timer.cancel()
    if timed_out.is_set():
        raise BuildError(f"kernel build timed out after {req.timeout:.0f}s (log: {log_path})")
    if rc != 0:
        if any("No space left on device" in e for e in errors):
            raise BuildError(f"no space left on device while building in {req.out}: free space or pass --out "
                             f"on a bigger disk")
        for line in tail:
            log(f"pinharness: build: | {line}")
        first = next((e for e in errors if "error:" in e), errors[0] if errors else f"make exited {rc}")
        raise BuildError(f"kernel build failed: {first} (full log: {log_path})")


def _kill_group(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=20)


def build(req: BuildRequest, log: Callable[[str], None] = print) -> BuildResult:
    """Configure and build; the result names the options that did not survive."""
    tree = check_tree(req.tree, req.arch)
    req = BuildRequest(tree, Path(req.out).expanduser().resolve(), tuple(req.configs), req.jobs, req.ccache,
                       req.timeout, req.config_dir, tuple(req.env), req.arch)
    fragments = build_fragments(req)
    require_tool("make")
    require_tool(f"{req.row.cross_prefix}gcc")
    req.out.mkdir(parents=True, exist_ok=True)
    if free_bytes(req.out) < MIN_FREE:
        raise BuildError(f"no space for a kernel build in {req.out}: {free_bytes(req.out) >> 20} MiB free, "
                         f"{MIN_FREE >> 20} MiB needed; free space or pass --out on a bigger disk")
    t0, cpu0 = time.monotonic(), _children_cpu()
    changed, missing = configure(req, fragments, log)
    for m in missing:
        log(f"pinharness: build: missing {m.line()}")
    ccache = _ccache() if req.ccache else None
    log(f"pinharness: build: make {' '.join(req.targets)} -j{req.jobs or os.cpu_count()} in {req.out}"
        f" ({'ccache' if ccache else 'no ccache'}, {'new config' if changed else 'config unchanged'})")
    run_make(req, req.targets, log, ccache)
    image = req.out / req.row.tree_image
    if not image.exists():
        raise BuildError(f"make succeeded but {image} is missing")
    res = BuildResult(req.out, fragments, missing, changed, time.monotonic() - t0, _children_cpu() - cpu0,
                      bool(ccache), image)
    log(f"pinharness: build: done in {res.seconds:.0f}s ({res.cpu_seconds:.0f} CPU-s): {image}")
    return res


def build_kernel(req: BuildRequest, paths: Paths, log: Callable[[str], None] = print) -> tuple[Kernel, BuildResult]:
    """Build, then resolve the O= directory into a bootable Kernel (modules installed into the cache)."""
    res = build(req, log)
    return from_tree(res.out, paths, log=log, arch=req.arch), res


def image_digest(out: Path) -> str:
    """sha256 of what boots: bzImage plus every module in modules.order (bisect reuse key)."""
    out = Path(out)
    h = hashlib.sha256()
    with open(out / "arch" / "x86" / "boot" / "bzImage", "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    order = out / "modules.order"
    if order.exists():
        for rel in order.read_text().split():
            ko = out / (rel[:-2] + ".ko" if rel.endswith(".o") else rel)
            if ko.exists():
                h.update(rel.encode() + b"\0" + ko.read_bytes())
    return h.hexdigest()
