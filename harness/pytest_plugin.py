"""pytest plugin: options, fixtures that boot guests, markers, per-test artifacts
and the post-test console check.

Fixtures
  kernel         the kernel under test, parametrized over --kernel/--kernel-tree
                 (default: Debian 6.1 and 6.12)
  guest_image    the cached Debian rootfs
  fs_type        "ext4" and "xfs" (parametrized)
  scratch_disk   a fresh host-made disk of fs_type (mkfs options: @pytest.mark.mkfs)
  vm             a booted guest for this test (function scope), with scratch_disk attached if requested
  module_vm      one booted guest per test module and kernel
  scratch_fs     scratch_disk mounted in vm at /mnt/scratch
  pin_workload   runs the test's @pytest.mark.workload(...) in vm on scratch_fs → WorkloadRun

Markers
  vm, slow, kconfig("VFIO_PCI", ...), vm_options(memory_mb=..., iommu=True, ...),
  mkfs(ext4=[...], xfs=[...]), expect_kernel_errors (no post-test console check),
  workload(name, stressors="a+b", pages=16): the vm gets that workload's disks and VM options
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

import pytest

from harness.kbuild import debian_src
from harness.vm import arch as arch_mod
from harness.vm import kernel as kernel_mod
from harness.vm.arch import DEFAULT as DEFAULT_ARCH, with_arch
from harness.errors import HarnessError, VMError
from harness.vm.host import Paths
from harness.vm.image import GuestImage, build_rootfs, make_scratch_disk
from harness.vm.kernel import Kernel
from harness.vm.qemu import AccelChoice
from harness.pins.stressors import parse as parse_stressors
from harness.vm.vm import VM, VMOptions, pick_accel
from harness.pins.workloads import WORKLOADS, needed_config, run_workload, workload_disks, workload_vm_options

# The kernels each VM test runs on unless --kernel says otherwise: the bug's past (6.1, pins allowed)
# and the refusal (6.12). Today's kernel (debian:sid, in the main job's defaults) has its own pin
# cells in tests/vm/test_today.py; `--kernel debian:sid` runs every VM test on it.
TEST_KERNELS = ("debian:6.1", "debian:6.12")

FS_TYPES = ("ext4", "xfs")
SCRATCH_MOUNT = "/mnt/scratch"


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("pinharness", "pinharness: kernels in QEMU guests")
    g.addoption("--kernel", action="append", default=[], metavar="SPEC",
                help="kernel to test (repeatable): debian:6.1, debian:6.12, a bzImage/vmlinux path, "
                     "or tree:PATH. Default: debian:6.1 and debian:6.12")
    g.addoption("--arch", action="append", default=[], metavar="A,B",
                help="run every kernel on these guest architectures (x86_64, arm64; default x86_64)")
    g.addoption("--kernel-tree", action="append", default=[], metavar="PATH",
                help="a built kernel tree or O= build directory (repeatable); with --build, a source tree")
    g.addoption("--build", action="store_true",
                help="build each --kernel-tree source tree first, out of tree and incrementally "
                     "(python -m harness build)")
    g.addoption("--build-config", default="base,pins", metavar="A,B",
                help="kernel-configs fragments for --build (default base,pins)")
    g.addoption("--modules", default=None, metavar="DIR", help="modules directory for a --kernel image")
    g.addoption("--accel", default="auto", choices=("auto", "kvm", "tcg"),
                help="auto: KVM if a canary boot works, else TCG (default)")
    g.addoption("--vm-memory", type=int, default=1024, metavar="MB", help="guest memory (default 1024)")
    g.addoption("--vm-cpus", type=int, default=1, metavar="N", help="guest CPUs (default 1)")
    g.addoption("--no-snapshot", action="store_true",
                help="boot every guest afresh (default: restore a snapshot of a booted guest, saved on first use)")
    g.addoption("--vm-timeout", type=float, default=180.0, metavar="S", help="boot timeout in seconds")
    g.addoption("--artifacts", default=None, metavar="DIR",
                help="where console logs, dmesg, QEMU argv and outcomes go (default: ./artifacts)")
    g.addoption("--require-vm", action="store_true",
                help="fail the run if any `vm` test was skipped or none ran (used by CI)")


def pytest_configure(config: pytest.Config) -> None:
    for line in (
        "vm: boots a QEMU guest",
        "slow: long-running (not in the CI tier)",
        "kconfig(*options): skip unless the kernel has these CONFIG_ options (y or m)",
        "vm_options(**kw): override VMOptions for this test's guest",
        "mkfs(ext4=[...], xfs=[...]): mkfs options for scratch_disk",
        "expect_kernel_errors: the test provokes kernel errors; skip the post-test console check",
        "workload(name, stressors=None, pages=16): attach the pin workload's disks/devices to vm (see pin_workload)",
    ):
        config.addinivalue_line("markers", line)
    config.stash[SESSION_KEY] = PinSession(config)
    if config.getoption("--require-vm"):
        config.pluginmanager.register(RequireVM(), "pinharness-require-vm")


# --------------------------------------------------------------------------- session state

@dataclass
class PinSession:
    """Per-pytest-session state: resolved kernels, the guest image, the accel decision."""

    config: pytest.Config
    paths: Paths = field(default_factory=Paths.default)
    kernels: dict = field(default_factory=dict)
    accels: dict = field(default_factory=dict)  # arch -> AccelChoice
    images: dict = field(default_factory=dict)  # arch -> GuestImage
    vm_tests: dict = field(default_factory=dict)  # nodeid -> outcome

    @property
    def artifacts(self) -> Path:
        opt = self.config.getoption("--artifacts")
        base = Path(opt) if opt else Path(str(self.config.rootpath)) / "artifacts"
        base.mkdir(parents=True, exist_ok=True)
        return base

    def kernel_specs(self) -> list[str]:
        specs = list(self.config.getoption("--kernel")) + [
            f"tree:{t}" for t in self.config.getoption("--kernel-tree")]
        specs = specs or list(TEST_KERNELS)
        arches = [a for v in self.config.getoption("--arch") for a in v.split(",") if a]
        return list(dict.fromkeys(with_arch(s, a) for a in arches for s in specs)) if arches else specs

    def kernel(self, spec: str) -> Kernel:
        if spec not in self.kernels:
            modules = self.config.getoption("--modules")
            target = spec
            if spec.startswith("tree:") and self.config.getoption("--build"):
                target = f"tree:{self.build_tree(Path(spec[len('tree:'):]))}"
            self.kernels[spec] = debian_src.resolve_spec(target, self.paths, modules=Path(modules) if modules else None)
        return self.kernels[spec]

    def build_tree(self, tree: Path) -> Path:
        """--build: build a source tree (incrementally, in its stable O= directory); that directory."""
        from harness.kbuild import build as build_mod

        configs = tuple(c for c in self.config.getoption("--build-config").split(",") if c)
        out = build_mod.default_out(tree, configs, self.paths)
        return build_mod.build(build_mod.BuildRequest(tree, out, configs), log=print).out

    def guest_image(self, arch: str = DEFAULT_ARCH) -> GuestImage:
        if arch not in self.images:
            self.images[arch] = build_rootfs(self.paths, arch=arch)
        return self.images[arch]

    def image_for(self, kernel: Kernel, image: GuestImage) -> GuestImage:
        """``image`` when it is of the kernel's architecture, else that architecture's image."""
        return image if image.arch == kernel.arch else self.guest_image(kernel.arch)

    def accel_for(self, kernel: Kernel) -> AccelChoice:
        if kernel.arch not in self.accels:
            self.accels[kernel.arch] = pick_accel(self.config.getoption("--accel"), kernel, self.paths,
                                                  self.artifacts / "_accel", log=_warn)
        return self.accels[kernel.arch]

    def vm_options(self, node) -> VMOptions:
        opts = VMOptions(memory_mb=self.config.getoption("--vm-memory"), cpus=self.config.getoption("--vm-cpus"),
                         accel=self.config.getoption("--accel"), boot_timeout=self.config.getoption("--vm-timeout"),
                         snapshot=not self.config.getoption("--no-snapshot"))
        wl = workload_request(node)
        if wl is not None:
            opts = replace(opts, **workload_vm_options(WORKLOADS[wl.name], wl.stressors))
        for mark in reversed(list(node.iter_markers("vm_options"))):
            opts = replace(opts, **mark.kwargs)
        return opts


@dataclass(frozen=True)
class WorkloadRequest:
    name: str
    stressors: tuple
    pages: int


def workload_request(node) -> Optional[WorkloadRequest]:
    mark = node.get_closest_marker("workload")
    if mark is None:
        return None
    name = mark.args[0] if mark.args else mark.kwargs["name"]
    if name not in WORKLOADS:
        raise pytest.UsageError(f"@pytest.mark.workload: unknown workload {name!r} (one of {', '.join(WORKLOADS)})")
    st = mark.kwargs.get("stressors") or "+".join(WORKLOADS[name].default_stressors)
    return WorkloadRequest(name, parse_stressors(st), int(mark.kwargs.get("pages", 16)))


SESSION_KEY = pytest.StashKey[PinSession]()
CHECKS_KEY = pytest.StashKey[list]()  # [(VM, console start offset)]


def _warn(msg: str) -> None:
    import warnings

    print(msg)
    warnings.warn(msg, stacklevel=2)


def _session(request) -> PinSession:
    return request.config.stash[SESSION_KEY]


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_")[:150]


def test_artifacts_dir(request) -> Path:
    d = _session(request).artifacts / _safe(request.node.nodeid)
    d.mkdir(parents=True, exist_ok=True)
    return d


# --------------------------------------------------------------------------- parametrization

def _parametrizes(metafunc: pytest.Metafunc, name: str) -> bool:
    """The test parametrizes ``name`` itself (e.g. today's kernel cells name debian:sid)."""
    return any(name in str(m.args[0]) for m in metafunc.definition.iter_markers("parametrize"))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "kernel_spec" in metafunc.fixturenames and not _parametrizes(metafunc, "kernel_spec"):
        specs = metafunc.config.stash[SESSION_KEY].kernel_specs()
        ids = [_safe(s.replace("debian:", "debian-").replace("tree:", "tree-")) for s in specs]
        metafunc.parametrize("kernel_spec", specs, ids=ids, scope="session")
    if "fs_type" in metafunc.fixturenames and not _parametrizes(metafunc, "fs_type"):
        metafunc.parametrize("fs_type", FS_TYPES, scope="function")


# --------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="session")
def ph_session(request) -> PinSession:
    return _session(request)


@pytest.fixture(scope="session")
def kernel(request, kernel_spec) -> Kernel:
    try:
        return _session(request).kernel(kernel_spec)
    except HarnessError as exc:
        pytest.fail(f"kernel {kernel_spec}: {exc}", pytrace=False)


@pytest.fixture(scope="session")
def guest_image(request) -> GuestImage:
    try:
        return _session(request).guest_image()
    except HarnessError as exc:
        pytest.fail(f"guest image: {exc}", pytrace=False)


@pytest.fixture(autouse=True)
def _ph_kconfig(request) -> None:
    marks = list(request.node.iter_markers("kconfig"))
    if not marks or "kernel" not in request.fixturenames:
        return
    k: Kernel = request.getfixturevalue("kernel")
    missing = k.missing_config(*[o for m in marks for o in m.args])
    if missing:
        pytest.skip(f"{k.name} lacks {', '.join(missing)}")


@pytest.fixture
def scratch_disk(request, fs_type, tmp_path):
    options: list[str] = []
    for mark in request.node.iter_markers("mkfs"):
        options = list(mark.kwargs.get(fs_type, options))
    try:
        return make_scratch_disk(tmp_path, fs_type, mkfs_options=options)
    except HarnessError as exc:
        pytest.fail(str(exc), pytrace=False)


def _boot(request, kernel: Kernel, image: GuestImage, workdir: Path, disks=()) -> VM:
    sess = _session(request)
    vm = VM(kernel, sess.image_for(kernel, image), sess.paths, workdir, sess.vm_options(request.node),
            disks=list(disks), accel=sess.accel_for(kernel), log=print)
    try:
        return vm.boot()
    except HarnessError as exc:
        pytest.fail(f"boot of {kernel.name} failed: {exc} (artifacts: {workdir})", pytrace=False)


@pytest.fixture
def vm(request, kernel, guest_image, tmp_path):
    disks = [request.getfixturevalue("scratch_disk")] if "scratch_disk" in request.fixturenames else []
    wl = workload_request(request.node)
    if wl is not None:
        disks += workload_disks(WORKLOADS[wl.name], tmp_path, wl.pages, wl.stressors)
    art = test_artifacts_dir(request)
    machine = _boot(request, kernel, guest_image, art, disks)
    request.node.stash.setdefault(CHECKS_KEY, []).append((machine, 0))
    try:
        yield machine
    finally:
        machine.close()


@pytest.fixture(scope="module")
def module_vm(request, kernel, guest_image):
    sess = _session(request)
    art = sess.artifacts / _safe(f"{request.node.nodeid}-{kernel.name}") / "module-vm"
    machine = _boot(request, kernel, guest_image, art)
    try:
        yield machine
    finally:
        machine.close()


@pytest.fixture(autouse=True)
def _ph_module_vm_check(request):
    """Register a module-scoped VM for the post-test check, from this test's start marker."""
    if "module_vm" in request.fixturenames:
        machine: VM = request.getfixturevalue("module_vm")
        try:
            start = machine.mark(f"test start {request.node.nodeid}")
        except VMError as exc:
            pytest.fail(f"module VM unusable: {exc}", pytrace=False)
        request.node.stash.setdefault(CHECKS_KEY, []).append((machine, start))
    yield


@dataclass
class ScratchFS:
    fs: str
    device: str
    mountpoint: str
    disk: object


@pytest.fixture
def scratch_fs(vm, scratch_disk) -> ScratchFS:
    try:
        dev = vm.disk(scratch_disk.serial)
    except VMError as exc:
        pytest.fail(f"scratch disk not visible in the guest: {exc}", pytrace=False)
    vm.run(f"modprobe {scratch_disk.fs} 2>/dev/null; mkdir -p {SCRATCH_MOUNT} && "
           f"mount -t {scratch_disk.fs} {dev} {SCRATCH_MOUNT}", timeout=60, check=True)
    return ScratchFS(scratch_disk.fs, dev, SCRATCH_MOUNT, scratch_disk)


@pytest.fixture
def pin_workload(request, vm, scratch_fs, ph_session):
    """A callable running the test's @pytest.mark.workload in vm on scratch_fs; returns the WorkloadRun."""
    wl = workload_request(request.node)
    if wl is None:
        raise pytest.UsageError("pin_workload needs @pytest.mark.workload(NAME, stressors=...)")
    missing = vm.kernel.missing_config(*needed_config(WORKLOADS[wl.name], vm.kernel.arch))
    if missing:
        pytest.skip(f"{vm.kernel.name} lacks {', '.join(missing)}")

    def run(timeout: float = 600):
        return run_workload(vm, wl.name, scratch_fs.fs, scratch_fs.device, scratch_fs.mountpoint, wl.stressors,
                            ph_session.paths, pages=wl.pages, timeout=timeout)
    return run


class KnownBugReproduced(AssertionError):
    """The cell reproduced the known kernel bug the oracle expects (what a strict xfail waits for)."""


def check_cell(request, session: "PinSession", kernel: Kernel, kernel_spec: str, workload: str, fs: str,
               stressors: str, subdir: str = "matrix"):
    """One matrix cell as a test: boot, run, verify, compare with the oracle. A known-bug cell is a
    strict xfail that passes only while the bug shows; a kernel without the workload's options skips."""
    from harness.pins import oracle
    from harness.pins.matrix import Cell, run_cell

    missing = kernel.missing_config(*needed_config(WORKLOADS[workload], kernel.arch))
    if missing:
        pytest.skip(f"{kernel.name} lacks {', '.join(missing)}")
    cell = Cell(kernel_spec, workload, fs, parse_stressors(stressors))
    exp = oracle.expectation(kernel.version_tuple, workload, fs, cell.stressors, config=kernel.config,
                              arch=kernel.arch)
    assert exp is not None, f"no oracle row for {cell.id}"
    if exp.bug:
        request.applymarker(pytest.mark.xfail(strict=True, raises=KnownBugReproduced,
                                              reason=f"known bug: {exp.expect} ({exp.why})"))
    res = run_cell(cell, kernel, session.image_for(kernel, request.getfixturevalue("guest_image")), session.paths,
                   session.artifacts / subdir,
                   session.accel_for(kernel), session.vm_options(request.node), log=lambda s: None)
    assert res.status not in ("ERROR", "SKIP"), f"{res.status}: {res.detail} (artifacts: {res.artifacts})"
    assert res.ok, f"{res.status}: {res.detail}; expected {res.expect} (artifacts: {res.artifacts})"
    if session.vm_options(request.node).snapshot and arch_mod.get(kernel.arch).vmgenid:  # from a restored guest
        summary = json.loads((Path(res.artifacts) / "vm" / "vm.json").read_text())
        assert summary.get("snapshot"), f"the guest was booted afresh, not restored (artifacts: {res.artifacts})"
    if exp.bug:
        raise KnownBugReproduced(f"{res.outcome} on {kernel.release}")
    return res


# --------------------------------------------------------------------------- post-test check

def kernel_problems(text: str) -> list[str]:
    """Titles of the crash reports in a console slice (the crash parser's view); events such as an
    OOM kill are no kernel problem (reports.txt still lists them)."""
    from harness.crash import console
    from harness.crash.oopses import EVENT_TYPES

    return [r.title for r in console.parse(text) if r.type not in EVENT_TYPES]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when != "call":
        return
    checks = item.stash.get(CHECKS_KEY, [])
    titles: list[str] = []
    for machine, start in checks:
        if machine.machine is not None and machine.machine.alive() and machine.guest is not None:
            try:
                machine.mark(f"test end {item.nodeid}")
            except VMError:
                pass
        text = machine.console_text(start)
        found = kernel_problems(text)
        titles += found
        art = _session(item).artifacts / _safe(item.nodeid)
        art.mkdir(parents=True, exist_ok=True)
        if start:  # module VM: keep this test's part of the console
            (art / "console.log").write_text(text)
        _write_reports(art, text, machine)
    expect = item.get_closest_marker("expect_kernel_errors") is not None
    if titles and not expect and report.passed:
        report.outcome = "failed"
        report.longrepr = "kernel reported during the test: " + "; ".join(dict.fromkeys(titles))
    if checks:
        sess = _session(item)
        sess.vm_tests[item.nodeid] = report.outcome
        art = sess.artifacts / _safe(item.nodeid)
        (art / "outcome.json").write_text(json.dumps(
            {"nodeid": item.nodeid, "outcome": report.outcome, "kernel_reports": titles,
             "duration": round(report.duration, 2)}, indent=1))


def _write_reports(art: Path, text: str, machine: VM) -> None:
    """Crash reports of the test, symbolized when the kernel's vmlinux has DWARF."""
    from harness.crash import console
    from harness.crash.report import write_reports

    reports = console.parse(text)
    if reports:
        write_reports(art / "reports.txt", reports, machine.kernel)


def pytest_collection_modifyitems(config: pytest.Config, items: list) -> None:
    for item in items:
        workload_request(item)  # a bad @pytest.mark.workload is a usage error at collection
        if {"vm", "module_vm", "scratch_fs"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.vm)


class RequireVM:
    """--require-vm: a run where a `vm` test was skipped, or none ran, fails (CI uses this)."""

    def __init__(self) -> None:
        self.ran: list[str] = []
        self.skipped: list[str] = []
        self.vm_ids: set[str] = set()

    @pytest.hookimpl(trylast=True)  # after the plugin marks the tests that use a guest fixture
    def pytest_collection_modifyitems(self, items) -> None:
        # by the marker: "vm" is also a keyword of every test under a folder named vm (tests/unit/vm/)
        self.vm_ids = {item.nodeid for item in items if item.get_closest_marker("vm") is not None}

    def pytest_runtest_logreport(self, report) -> None:
        if report.nodeid not in self.vm_ids:
            return
        if hasattr(report, "wasxfail"):  # xfailed (reported as skipped) or xpassed: the guest ran
            if report.when == "call":
                self.ran.append(report.nodeid)
        elif report.skipped:
            self.skipped.append(report.nodeid)
        elif report.when == "call":
            self.ran.append(report.nodeid)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if (self.skipped or not self.ran) and session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if self.skipped or not self.ran:
            terminalreporter.write_line(
                f"pinharness --require-vm: {len(self.ran)} VM tests ran, {len(self.skipped)} skipped "
                f"({', '.join(self.skipped[:5])}): the run fails", red=True)
        else:
            terminalreporter.write_line(f"pinharness --require-vm: {len(self.ran)} VM tests ran, none skipped",
                                        green=True)
