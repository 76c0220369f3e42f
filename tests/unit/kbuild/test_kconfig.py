"""harness.kbuild.kconfig: fragments, the Kconfig index of a (fake) tree, and why an option is missing."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from harness.kbuild import kconfig as K
from harness.vm.host import Paths

KCONFIG = {
    "Kconfig": """
        mainmenu "fake"
        config 64BIT
        \tdef_bool y
        config X86
        \tdef_bool y
        config MODULES
        \tbool "Enable loadable module support"
        config DEBUG_KERNEL
        \tbool "Kernel debugging"
        source "drivers/Kconfig"
        source "arch/$(SRCARCH)/Kconfig"
        """,
    "drivers/Kconfig": """
        menuconfig IOMMU_SUPPORT
        \tbool "IOMMU Hardware Support"
        \tdefault y

        if IOMMU_SUPPORT
        rsource "iommu/Kconfig"
        endif

        config PCI
        \tbool "PCI support"
        config PCI_MSI
        \tbool "Message Signaled Interrupts (MSI and MSI-X)"
        \tdepends on PCI
        config ACPI
        \tbool "ACPI"
        config HIDDEN
        \tbool
        config FOO
        \ttristate "foo"
        \tselect HIDDEN
        \tselect ANOTHER if DEBUG_KERNEL
        config TRISTATE_DEP
        \ttristate "needs FOO"
        \tdepends on FOO
        menu "Testing"
        \tdepends on DEBUG_KERNEL
        config FAULT_INJECTION
        \tbool "Fault-injection framework"
        endmenu
        choice
        \tprompt "Allocator"
        config SLUB
        \tbool "SLUB"
        config SLOB
        \tbool "SLOB"
        endchoice
        comment "a comment"
        \tdepends on PCI
        """,
    "drivers/iommu/Kconfig": """
        config INTEL_IOMMU
        \tbool "Support for Intel IOMMU using DMA Remapping Devices"
        \tdepends on PCI_MSI && ACPI && (X86 || IA64)
        \thelp
        \t  DMA remapping.
        \t  depends on NOTHING_REAL: this line is help text.

        config AFTER_HELP
        \tbool "after"
        \tdepends on \\
        \t\tACPI
        """,
    "arch/x86/Kconfig": """
        config KVM_AMD
        \ttristate "KVM for AMD processors support"
        \tdepends on X86 && "$(ARCH)" = "x86_64"
        """,
}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for rel, text in KCONFIG.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
    return tmp_path


def test_fragments_later_wins_and_overrides_are_listed():
    base = "CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_S=\"x y\"\n# a comment\n"
    pins = "CONFIG_B=y\nCONFIG_A=y\nCONFIG_C=m\n"
    assert K.parse_fragment(base) == {"CONFIG_A": "y", "CONFIG_B": "n", "CONFIG_S": "x y"}
    assert K.merge_fragments([base, pins]) == {"CONFIG_A": "y", "CONFIG_B": "y", "CONFIG_S": "x y", "CONFIG_C": "m"}
    assert K.fragment_overrides([("base", base), ("pins", pins)]) == [("CONFIG_B", "n", "y", "pins")]


def test_index_follows_source_and_carries_if_and_menu_conditions(tree):
    idx = K.build_index(tree)
    intel = idx.entries["INTEL_IOMMU"][0]
    assert intel.file == "drivers/iommu/Kconfig" and intel.prompt
    assert intel.depends == ["IOMMU_SUPPORT", "PCI_MSI && ACPI && (X86 || IA64)"]
    assert idx.entries["FAULT_INJECTION"][0].depends == ["DEBUG_KERNEL"]
    assert idx.entries["AFTER_HELP"][0].depends == ["IOMMU_SUPPORT", "ACPI"]  # help skipped, continuation joined
    assert "NOTHING_REAL" not in str(idx.entries)
    assert idx.entries["SLOB"][0].in_choice and not idx.entries["FOO"][0].in_choice
    assert not idx.entries["HIDDEN"][0].prompt
    assert ("FOO", "") in idx.selected_by["HIDDEN"] and ("FOO", "DEBUG_KERNEL") in idx.selected_by["ANOTHER"]
    assert idx.entries["KVM_AMD"][0].depends == ['X86 && "x86_64" = "x86_64"']
    assert "PCI" in idx.entries  # the comment's `depends on` attaches to nothing
    assert idx.entries["PCI"][0].depends == []


@pytest.mark.parametrize("expr,want", [
    ("A && B", K.N), ("A || B", K.Y), ("!B", K.Y), ("A && (B || !C)", K.N), ("A && (B || C)", K.Y), ("M", K.M), ("M && A", K.M),
    ("S = \"abc\"", K.Y), ("S != \"abc\"", K.N), ("NUM >= 23502", K.Y), ("NUM < 100", K.N), ("m", K.M),
    ("UNKNOWN", K.N), ("y", K.Y),
])
def test_evaluate_tristate(expr, want):
    values = {"A": "y", "B": "n", "C": "y", "M": "m", "S": "abc", "NUM": "24000", "MODULES": "y"}
    assert K.evaluate(expr, values) == want


def test_conjuncts_respect_parentheses():
    assert K.conjuncts("PCI_MSI && ACPI && (X86 || IA64)") == ["PCI_MSI", "ACPI", "X86 || IA64"]
    assert K.conjuncts("(A && B)") == ["A", "B"] or K.conjuncts("(A && B)") == ["A && B"]


def test_explain_names_the_missing_dependency_and_its_own(tree):
    idx = K.build_index(tree)
    values = {"IOMMU_SUPPORT": "y", "ACPI": "y", "X86": "y"}
    why = K.explain("INTEL_IOMMU", "y", values, idx)
    assert why == "needs PCI_MSI (=n) <- PCI_MSI needs PCI (=n)"
    assert K.explain("INTEL_IOMMU", "y", {"X86": "y"}, idx).startswith("needs IOMMU_SUPPORT (=n), PCI_MSI (=n)")
    assert K.explain("IOMMUFD", "y", values, idx) == "not in this tree (no `config IOMMUFD` in its Kconfig files)"
    assert K.explain("FAULT_INJECTION", "y", {}, idx) == "needs DEBUG_KERNEL (=n)"
    assert "no prompt" in K.explain("HIDDEN", "y", {}, idx)
    assert "choice" in K.explain("SLOB", "y", {"SLUB": "y"}, idx)
    assert K.explain("HIDDEN", "n", {"FOO": "y", "HIDDEN": "y"}, idx) == "selected by FOO"
    assert K.explain("TRISTATE_DEP", "y", {"FOO": "m", "TRISTATE_DEP": "m", "MODULES": "y"}, idx) == "needs FOO (=m)"


def test_missing_options_reports_only_unsatisfied_requests(tree):
    idx = K.build_index(tree)
    requested = {"CONFIG_ACPI": "y", "CONFIG_INTEL_IOMMU": "y", "CONFIG_FOO": "m", "CONFIG_IOMMUFD": "y",
                 "CONFIG_SLOB": "n"}
    final = {"CONFIG_ACPI": "y", "CONFIG_FOO": "y", "CONFIG_X86": "y", "CONFIG_IOMMU_SUPPORT": "y",
             "CONFIG_INTEL_IOMMU": "n", "CONFIG_SLUB": "y"}
    missing = K.missing_options(requested, final, idx)
    assert [m.option for m in missing] == ["CONFIG_INTEL_IOMMU", "CONFIG_IOMMUFD"]
    assert missing[0].line() == "CONFIG_INTEL_IOMMU=y -> n: needs PCI_MSI (=n) <- PCI_MSI needs PCI (=n)"
    assert K.satisfied("m", "y") and not K.satisfied("y", "m") and K.satisfied("n", None)


def test_repository_fragments_parse_and_every_option_is_commented():
    cfg_dir = Path(__file__).resolve().parents[3] / "kernel-configs"
    names = {p.stem for p in cfg_dir.glob("*.config")}
    assert {"base", "pins", "debug"} <= names
    for path in cfg_dir.glob("*.config"):
        lines = path.read_text().splitlines()
        opts = K.parse_fragment(path.read_text())
        assert opts, path
        # every option line sits under a comment block explaining it (no bare option at the top)
        first_opt = next(i for i, ln in enumerate(lines) if ln.startswith("CONFIG_") or ln.endswith("is not set"))
        assert any(ln.startswith("# ") and "CONFIG_" not in ln for ln in lines[:first_opt]), path
        for i, ln in enumerate(lines):
            if ln.startswith("CONFIG_"):
                block = lines[max(0, i - 12):i]
                assert any(b.startswith("#") and "is not set" not in b for b in block), f"{path.name}: {ln} uncommented"
    pins = K.parse_fragment((cfg_dir / "pins.config").read_text())
    from harness.pins.workloads import WORKLOADS

    merged = {**K.parse_fragment((cfg_dir / "base.config").read_text()), **pins}
    for wl in WORKLOADS.values():  # every workload's requirements are asked for
        for opt in wl.kconfig:
            assert merged.get("CONFIG_" + opt) in ("y", "m"), (wl, opt)


REAL_TREE = Paths.default().cache / "src" / "linux-source-6.1"


@pytest.mark.slow  # indexes every Kconfig file of a real tree
@pytest.mark.skipif(not (REAL_TREE / "Kconfig").exists(),
                    reason=f"needs Debian's kernel source unpacked at {REAL_TREE} (apt-get install linux-source-6.1; "
                           f"tar -xf /usr/src/linux-source-6.1.tar.xz -C {REAL_TREE.parent})")
def test_real_61_dependencies_are_named():
    idx = K.build_index(REAL_TREE)
    assert idx.files > 1000
    base = {"X86": "y", "X86_64": "y", "64BIT": "y", "MMU": "y", "PCI": "y", "HAS_DMA": "y", "NET": "y",
            "ARCH_SUPPORTS_ACPI": "y"}
    assert K.explain("INTEL_IOMMU", "y", {**base, "IOMMU_SUPPORT": "y", "ACPI": "y"}, idx) == "needs PCI_MSI (=n)"
    assert K.explain("INTEL_IOMMU", "y", {**base, "PCI_MSI": "y"}, idx) == \
        "needs IOMMU_SUPPORT (=n), ACPI (=n)"
    assert K.explain("VDPA_SIM", "y", {**base, "VDPA": "y"}, idx) == "needs RUNTIME_TESTING_MENU (=n)"
    assert K.explain("XDP_SOCKETS", "y", base, idx) == "needs BPF_SYSCALL (=n)"
    assert K.explain("IOMMUFD", "y", base, idx).startswith("not in this tree")
