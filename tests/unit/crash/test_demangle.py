"""Frame names demangled the way syzkaller titles them (no parameters), c++filt only as a fallback."""
import shutil

import pytest

from harness.crash import demangle as dm

PURE = {
    "_ZN6kernel5print11call_printk17h1234567890abcdefE": "kernel::print::call_printk",  # Rust legacy
    "_ZN4core3ptr46drop_in_place$LT$alloc..vec..Vec$LT$u8$GT$$GT$17h0123456789abcdefE":
        "core::ptr::drop_in_place<alloc::vec::Vec<u8>>",
    "_RNvNtCs1234_7mycrate3foo3bar": "mycrate::foo::bar",  # Rust v0
    "_RNCNvCs1234_7mycrate4main0B3_": "mycrate::main::{closure#0}",
    "_ZN7android8hardware6Parcel5writeEPKvm": "android::hardware::Parcel::write",  # C++, params dropped
    "_ZNK3foo3Bar3bazEv": "foo::Bar::baz",
    "_ZN3FooC1Ev": "Foo::Foo",
    "_ZN3FooD2Ev": "Foo::~Foo",
    "_ZNSt6vector4sizeEv": "std::vector::size",
    "_Z3fooi": "foo",
}


@pytest.mark.parametrize("mangled", sorted(PURE))
def test_pure_python_shapes(mangled):
    assert dm.demangle_pure(mangled) == PURE[mangled]
    assert dm.demangle(mangled) == PURE[mangled]


@pytest.mark.parametrize("name", ["ext4_dirty_folio", "__x64_sys_ioctl", "_", "Z", "_Zx", "_R"])
def test_plain_names_are_untouched(name):
    assert dm.demangle(name) == name


def test_unsupported_shape_without_cxxfilt_stays_mangled(monkeypatch):
    monkeypatch.setattr(dm.shutil, "which", lambda exe: None)
    templ = "_ZNK3foo3BarIiE3bazEv"  # a template argument: not decoded in pure Python
    assert dm.demangle_pure(templ) is None
    assert dm.demangle(templ) == templ


def test_cxxfilt_failure_is_no_crash(monkeypatch, tmp_path):
    fake = tmp_path / "c++filt"
    fake.write_text("#!/bin/sh\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setattr(dm.shutil, "which", lambda exe: str(fake))
    assert dm.demangle("_ZNK3foo3BarIiE3bazEv") == "_ZNK3foo3BarIiE3bazEv"


@pytest.mark.skipif(shutil.which("c++filt") is None, reason="binutils' c++filt is not installed")
def test_cxxfilt_fallback_for_templates_and_impls():
    assert dm.demangle("_ZNK3foo3BarIiE3bazEv") == "foo::Bar<int>::baz"
    assert dm.demangle("_RNvMs_NtCs9ltgdHTiPiY_4core3fmtNtB4_9Arguments3new") == "<core::fmt::Arguments>::new"


def test_over_long_names_are_not_symbols():
    name = "_ZN" + "3abc" * 200 + "E"
    assert dm.demangle(name) == name
