"""harness.kbuild.build on a fake kernel tree: a Makefile that answers tinyconfig/olddefconfig/bzImage/modules,
a merge_config.sh, and Kconfig files. Checks the orchestration: O= only (the tree is never
written), fragment merge order, the missing-option report, incremental config, progress and
one-line errors. The real linux-source tree is used when it is unpacked (slow tier)."""
from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from harness.kbuild import build as B
from harness.cli import parser as cli
from harness.errors import HarnessError
from harness.vm.host import Paths

MAKEFILE = """\
O ?= .
tinyconfig:
\t@test "$(ARCH)" = x86_64 || { echo "ARCH is $(ARCH)"; exit 1; }
\tcp $(CURDIR)/tiny.config $(O)/.config
olddefconfig:
\tpython3 $(CURDIR)/olddef.py $(O)/.config
bzImage:
\t@echo "  CC      mm/gup.o"
\t@echo "  CC      mm/filemap.o"
\t@if [ -e $(CURDIR)/FAIL ]; then echo "mm/gup.c:12:1: error: expected ';' before '}' token"; \\
\t  echo "make[2]: *** [scripts/Makefile.build:250: mm/gup.o] Error 1"; exit 2; fi
\tmkdir -p $(O)/arch/x86/boot && printf 'kernel $(shell cat $(CURDIR)/VERSION)' > $(O)/arch/x86/boot/bzImage
\techo "$(CC)" > $(O)/cc.txt
\techo "$$PH_EXTRA_ENV" > $(O)/env.txt
modules:
\t@echo "  LD [M]  drivers/x.ko"
"""

# olddefconfig: drop an option whose dependency (a table) is not y, like Kconfig would
OLDDEF = """\
import sys
deps = {"CONFIG_INTEL_IOMMU": "CONFIG_PCI_MSI", "CONFIG_PCI_MSI": "CONFIG_PCI"}
path = sys.argv[1]
lines = open(path).read().splitlines()
for _ in deps:
    vals = {l.split("=")[0]: l.split("=", 1)[1] for l in lines if l.startswith("CONFIG_")}
    lines = [f"# {l.split('=')[0]} is not set" if l.split("=")[0] in deps and vals.get(deps[l.split("=")[0]]) != "y"
             else l for l in lines]
open(path, "w").write("\\n".join(lines) + "\\n")
"""

MERGE = """\
#!/bin/bash
# fake merge_config.sh -m -O OUT BASE FRAGMENT...: later values win; temp files in "."
[ "$1" = -m ] && [ "$2" = -O ] || { echo "bad args $*"; exit 1; }
out=$3; shift 3
[ "$(pwd -P)" = "$(cd "$out" && pwd -P)" ] || { echo "not run inside O="; exit 1; }
tmp=$(mktemp ./.tmp.config.XXXXXX)
awk 'match($0, /CONFIG_[A-Za-z0-9_]+/) { k = substr($0, RSTART, RLENGTH); if (!(k in v)) o[++n] = k; v[k] = $0 }
     END { for (i = 1; i <= n; i++) print v[o[i]] }' "$@" > "$tmp"
cp "$tmp" "$out/.config"; rm -f "$tmp"
"""

KCONFIG = """\
config 64BIT
\tdef_bool y
config PCI_MSI
\tbool "MSI"
\tdepends on PCI
config PCI
\tbool "PCI"
config INTEL_IOMMU
\tbool "Intel IOMMU"
\tdepends on PCI_MSI
config EXT4_FS
\ttristate "ext4"
"""


@pytest.fixture
def fake_tree(tmp_path: Path) -> Path:
    tree = tmp_path / "linux"
    (tree / "arch" / "x86").mkdir(parents=True)
    (tree / "scripts" / "kconfig").mkdir(parents=True)
    (tree / "Makefile").write_text(MAKEFILE)
    (tree / "Kconfig").write_text(KCONFIG)
    (tree / "olddef.py").write_text(OLDDEF)
    (tree / "tiny.config").write_text("CONFIG_64BIT=y\n# CONFIG_PCI is not set\n# CONFIG_EXT4_FS is not set\n")
    (tree / "scripts" / "kconfig" / "merge_config.sh").write_text(MERGE)
    (tree / "VERSION").write_text("1")
    return tree


@pytest.fixture
def fragments(tmp_path: Path) -> Path:
    d = tmp_path / "configs"
    d.mkdir()
    (d / "base.config").write_text("# the root fs\nCONFIG_EXT4_FS=y\n# MSI without PCI: dropped\nCONFIG_PCI_MSI=y\n")
    (d / "pins.config").write_text("# vIOMMU\nCONFIG_INTEL_IOMMU=y\n# modules are fine too\nCONFIG_EXT4_FS=m\n")
    return d


def snapshot(tree: Path) -> dict:
    return {str(p.relative_to(tree)): (p.stat().st_mtime_ns, p.read_bytes()) for p in tree.rglob("*") if p.is_file()}


def request(tree: Path, tmp_path: Path, cfg_dir: Path, configs=("base", "pins")) -> B.BuildRequest:
    return B.BuildRequest(tree, tmp_path / "out", tuple(configs), jobs=2, ccache=False, timeout=120, config_dir=cfg_dir)


def test_build_merges_fragments_reports_missing_options_and_never_writes_the_tree(fake_tree, fragments, tmp_path):
    before = snapshot(fake_tree)
    lines: list[str] = []
    res = B.build(request(fake_tree, tmp_path, fragments), log=lines.append)
    assert snapshot(fake_tree) == before
    cfg = (tmp_path / "out" / ".config").read_text()
    assert "CONFIG_EXT4_FS=m" in cfg  # pins came after base
    assert [m.line() for m in res.missing] == [
        "CONFIG_PCI_MSI=y -> n: needs PCI (=n)",
        "CONFIG_INTEL_IOMMU=y -> n: needs PCI_MSI (=n) <- PCI_MSI needs PCI (=n)",
    ]
    assert res.image == tmp_path / "out" / "arch" / "x86" / "boot" / "bzImage" and res.image.exists()
    assert res.config_changed and not res.ccache
    assert any("pins overrides CONFIG_EXT4_FS=y with m" in ln for ln in lines)
    assert any(ln.startswith("pinharness: build: missing CONFIG_INTEL_IOMMU") for ln in lines)
    assert not list((tmp_path / "out").glob(".tmp.config*"))


def test_unchanged_config_keeps_its_mtime_so_the_build_stays_incremental(fake_tree, fragments, tmp_path):
    req = request(fake_tree, tmp_path, fragments)
    B.build(req, log=lambda s: None)
    cfg = tmp_path / "out" / ".config"
    os.utime(cfg, ns=(1_000_000_000, 1_000_000_000))
    res = B.build(req, log=lambda s: None)
    assert not res.config_changed and cfg.stat().st_mtime_ns == 1_000_000_000
    (fragments / "pins.config").write_text("CONFIG_PCI=y\n")
    res = B.build(req, log=lambda s: None)
    assert res.config_changed and cfg.stat().st_mtime_ns != 1_000_000_000


def test_failed_build_is_one_line_with_the_compiler_error_and_shows_the_tail(fake_tree, fragments, tmp_path):
    (fake_tree / "FAIL").write_text("")
    lines: list[str] = []
    with pytest.raises(B.BuildError) as ei:
        B.build(request(fake_tree, tmp_path, fragments), log=lines.append)
    msg = str(ei.value)
    assert "\n" not in msg
    assert "mm/gup.c:12:1: error: expected ';' before '}' token" in msg
    assert "pinharness-build.log" in msg
    assert any("| make[2]: *** [scripts/Makefile.build:250: mm/gup.o] Error 1" in ln for ln in lines)


def test_ccache_goes_into_cc_when_present(fake_tree, fragments, tmp_path, monkeypatch):
    monkeypatch.setattr(B, "_ccache", lambda: "/usr/bin/ccache")
    req = B.BuildRequest(fake_tree, tmp_path / "out", ("base",), 1, True, 60, fragments, (("PH_EXTRA_ENV", "x1"),))
    res = B.build(req, log=lambda s: None)
    assert res.ccache
    assert (tmp_path / "out" / "cc.txt").read_text().strip() == "/usr/bin/ccache gcc"
    assert (tmp_path / "out" / "env.txt").read_text().strip() == "x1"  # extra environment reaches make


def test_progress_is_throttled(fake_tree, fragments, tmp_path, monkeypatch):
    monkeypatch.setattr(B, "PROGRESS_EVERY", 0.0)
    lines: list[str] = []
    B.build(request(fake_tree, tmp_path, fragments), log=lines.append)
    steps = [ln for ln in lines if " steps (" in ln]
    assert len(steps) == 3 and any(ln.endswith("(LD [M] drivers/x.ko)") for ln in steps)
    monkeypatch.setattr(B, "PROGRESS_EVERY", 3600.0)
    lines.clear()
    B.build(request(fake_tree, tmp_path, fragments), log=lines.append)
    assert not [ln for ln in lines if " steps (" in ln]


def test_identical_sources_give_an_identical_digest(fake_tree, fragments, tmp_path):
    req = request(fake_tree, tmp_path, fragments)
    B.build(req, log=lambda s: None)
    first = B.image_digest(req.out)
    B.build(req, log=lambda s: None)
    assert B.image_digest(req.out) == first
    (fake_tree / "VERSION").write_text("2")
    B.build(req, log=lambda s: None)
    assert B.image_digest(req.out) != first


def test_build_environment_is_reproducible():
    env = B.build_env({"PATH": "/usr/bin", "ARCH": "i386", "KCONFIG_CONFIG": "/x"})
    assert env["KBUILD_BUILD_TIMESTAMP"] and env["KBUILD_BUILD_HOST"] == "pinharness"
    assert env["CCACHE_NOHASHDIR"] == "1" and "ARCH" not in env and "KCONFIG_CONFIG" not in env
    argv = B.make_argv(B.BuildRequest(Path("/src"), Path("/o")), ["olddefconfig"], "ccache")
    assert argv == ["make", "-C", "/src", "O=/o", "ARCH=x86_64", "LOCALVERSION=", "CC=ccache gcc", "olddefconfig"]


def test_an_arm64_build_is_cross_compiled_with_its_own_fragment_and_directory(tmp_path):
    """`build --arch arm64`: ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu-, the Image target, kernel-configs/
    arm64.config after the shared fragments, and an O= directory apart from the x86 build of the tree.
    (Measured on linux-source-7.2: the configure step keeps every pin option; the x86-only options of
    base/pins are listed as missing with kconfig's reason.)"""
    req = B.BuildRequest(Path("/src"), Path("/o"), ("base", "pins"), arch="arm64")
    argv = B.make_argv(req, req.targets, "ccache")
    assert argv == ["make", "-C", "/src", "O=/o", "ARCH=arm64", "LOCALVERSION=", "CROSS_COMPILE=aarch64-linux-gnu-",
                    "CC=ccache aarch64-linux-gnu-gcc", "Image", "modules"]
    assert [f.name for f in B.build_fragments(req)] == ["base.config", "pins.config", "arm64.config"]
    assert [f.name for f in B.build_fragments(B.BuildRequest(Path("/src"), Path("/o")))] == ["base.config",
                                                                                          "pins.config"]
    paths = Paths(tmp_path)
    x86, arm = B.default_out(Path("/src"), ["base", "pins"], paths), B.default_out(Path("/src"), ["base", "pins"],
                                                                                    paths, "arm64")
    assert x86 != arm and arm.name.endswith("base+pins-arm64") and x86.name.endswith("base+pins")
    tree = tmp_path / "linux"
    for d in ("arch/x86", "scripts/kconfig"):
        (tree / d).mkdir(parents=True)
    (tree / "Makefile").write_text("")
    (tree / "Kconfig").write_text("")
    with pytest.raises(HarnessError, match=r"no Makefile, Kconfig and arch/arm64/"):
        B.check_tree(tree, "arm64")


@pytest.mark.parametrize("setup,message", [
    (lambda t: (t / "Kconfig").unlink(), "is not a kernel source tree"),
    (lambda t: (t / ".config").write_text(""), "make mrproper"),
    (lambda t: (t / "include" / "config").mkdir(parents=True), "make mrproper"),
    (lambda t: (t / "scripts" / "kconfig" / "merge_config.sh").unlink(), "merge_config.sh"),
])
def test_bad_trees_are_one_line_errors(fake_tree, fragments, tmp_path, setup, message):
    setup(fake_tree)
    with pytest.raises(HarnessError, match=message):
        B.build(request(fake_tree, tmp_path, fragments), log=lambda s: None)


def test_unknown_fragment_and_no_space(fake_tree, fragments, tmp_path, monkeypatch):
    with pytest.raises(HarnessError, match="no config fragment 'nope': use one of base, pins"):
        B.fragment_paths(["nope"], fragments)
    assert B.fragment_paths([str(fragments / "base.config")], tmp_path) == [(fragments / "base.config").resolve()]
    monkeypatch.setattr(B, "free_bytes", lambda p: 100 << 20)
    with pytest.raises(HarnessError, match="no space for a kernel build .* 100 MiB free"):
        B.build(request(fake_tree, tmp_path, fragments), log=lambda s: None)


def test_i386_config_is_refused(fake_tree, fragments, tmp_path):
    (fake_tree / "tiny.config").write_text("# CONFIG_64BIT is not set\n")
    (fragments / "base.config").write_text("# root fs\nCONFIG_EXT4_FS=y\n")
    with pytest.raises(B.BuildError, match="not a 64-bit x86 config"):
        B.build(request(fake_tree, tmp_path, fragments, ["base"]), log=lambda s: None)


def test_default_out_is_stable_per_tree_and_fragment_set(tmp_path):
    paths = Paths(tmp_path)
    a = B.default_out(tmp_path / "linux", ["base", "pins"], paths)
    assert a == B.default_out(tmp_path / "linux", ["base", "pins"], paths)
    assert a != B.default_out(tmp_path / "linux", ["base", "pins", "debug"], paths)
    assert a != B.default_out(tmp_path / "other" / "linux", ["base", "pins"], paths)
    assert a.name.startswith("linux-") and a.name.endswith("-base+pins")


def test_build_command_is_registered(capsys):
    assert cli.COMMANDS["build"][0] == "harness.cli.build"
    args = cli.build_parser().parse_args(["build", "--tree", "/src", "--config", "base,pins,debug", "-j", "2"])
    assert args.config == ["base", "pins", "debug"] and args.jobs == 2
    assert cli.main(["build", "--tree", "/nonexistent"]) == 2
    assert "is not a directory" in capsys.readouterr().err


# --------------------------------------------------------------------------- the real tree, when unpacked

REAL_TREE = Paths.default().cache / "src" / "linux-source-6.1"


@pytest.mark.slow  # make tinyconfig + merge_config + olddefconfig on a real tree: a minute
@pytest.mark.skipif(not (REAL_TREE / "Makefile").exists(),
                    reason=f"needs Debian's kernel source unpacked at {REAL_TREE} (apt-get install linux-source-6.1 "
                           f"make gcc flex bison; tar -xf /usr/src/linux-source-6.1.tar.xz -C {REAL_TREE.parent})")
def test_real_61_tree_base_pins_config(tmp_path):
    req = B.BuildRequest(REAL_TREE, tmp_path / "out", ("base", "pins"), jobs=2)
    changed, missing = B.configure(req, B.fragment_paths(req.configs), log=lambda s: None)
    final = (tmp_path / "out" / ".config").read_text()
    for opt in ("CONFIG_64BIT=y", "CONFIG_SLUB=y", "CONFIG_INTEL_IOMMU=y", "CONFIG_VFIO_PCI=y", "CONFIG_RDMA_RXE=y",
                "CONFIG_DEBUG_INFO_DWARF5=y", "CONFIG_VIRTIO_BLK=y", "CONFIG_XFS_FS=y", "CONFIG_KVM_AMD=y"):
        assert opt in final
    # iommufd arrived in v6.2: reported, with the reason
    assert {m.option: m.reason for m in missing} == {
        "CONFIG_IOMMUFD": "not in this tree (no `config IOMMUFD` in its Kconfig files)",
        "CONFIG_IOMMUFD_TEST": "not in this tree (no `config IOMMUFD_TEST` in its Kconfig files)",
    }
    assert not (REAL_TREE / ".config").exists()


def test_a_failed_make_is_named_by_its_cause_not_by_makes_last_line():
    out = ("make[1]: Entering directory '/x'\n/bin/sh: 1: flex: not found\n"
           "make[5]: *** [/x/scripts/Makefile.host:9: scripts/kconfig/lexer.lex.c] Error 127\n"
           "make: Leaving directory '/x'\n")
    assert B.first_error(out) == "/bin/sh: 1: flex: not found"
    assert B.first_error("just one line\n") == "just one line"
