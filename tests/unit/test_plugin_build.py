"""The pytest plugin's --build: a --kernel-tree source tree is built (harness.kbuild.build) before it is resolved."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from harness.kbuild import build as build_mod
from harness.vm import kernel as kernel_mod
from harness.vm.host import Paths
from harness.pytest_plugin import PinSession


class Options:
    def __init__(self, **values):
        self.values = {"--modules": None, "--build": False, "--build-config": "base,pins", **values}

    def getoption(self, name):
        return self.values[name]


def test_build_option_builds_the_tree_into_its_stable_out_dir(tmp_path, monkeypatch):
    built, resolved = [], []
    monkeypatch.setattr(build_mod, "build", lambda req, log: built.append(req) or SimpleNamespace(out=req.out))
    monkeypatch.setattr(kernel_mod, "resolve", lambda spec, paths, modules=None, **kw: resolved.append(spec) or spec)
    sess = PinSession(Options(**{"--build": True, "--build-config": "base,pins,debug"}), paths=Paths(tmp_path))
    assert sess.kernel("tree:/src/linux") == resolved[0]
    want_out = build_mod.default_out(Path("/src/linux"), ("base", "pins", "debug"), Paths(tmp_path))
    assert built[0].tree == Path("/src/linux") and built[0].configs == ("base", "pins", "debug")
    assert built[0].out == want_out and resolved == [f"tree:{want_out}"]
    sess.kernel("tree:/src/linux")  # cached per session: built once
    assert len(built) == 1
    sess.kernel("debian:6.1")  # only trees are built
    assert len(built) == 1 and resolved[-1] == "debian:6.1"


def test_without_build_the_tree_is_used_as_given(tmp_path, monkeypatch):
    monkeypatch.setattr(build_mod, "build", lambda req, log: (_ for _ in ()).throw(AssertionError("built")))
    monkeypatch.setattr(kernel_mod, "resolve", lambda spec, paths, modules=None, **kw: spec)
    assert PinSession(Options(), paths=Paths(tmp_path)).kernel("tree:/o") == "tree:/o"
