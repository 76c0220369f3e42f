"""harness.vm.debian: Debian's kernel indexes read without the host's apt (offline: synthetic indexes)."""
import json
import shutil
import subprocess

import pytest

from harness.errors import KernelError
from harness.vm import debian
from harness.vm import kernel as kernel_mod
from harness.vm.host import Paths

SUITE = debian.Suite("sid", "debian", "sid")


def stanza(package, version, size=100, sha="ab" * 32):
    return (f"Package: {package}\nSource: linux\nVersion: {version}\nInstalled-Size: 1\n"
            f"Filename: pool/main/l/linux/{package}_{version}_amd64.deb\nSize: {size}\nSHA256: {sha}\n"
            "Description: x\n")


PACKAGES = "\n".join([
    stanza("linux-image-6.1.0-57-amd64-unsigned", "6.1.192-3"),
    stanza("linux-image-6.1.0-57-cloud-amd64-unsigned", "6.1.192-3"),
    stanza("linux-image-6.1.0-57-amd64-dbg", "6.1.192-3"),
    stanza("linux-image-6.12.117+deb12-amd64-unsigned", "6.12.117-1~deb12u1"),
    stanza("linux-image-6.12.117+deb12-rt-amd64-unsigned", "6.12.117-1~deb12u1"),
    stanza("linux-binary-unsigned-7.2.13+deb14-amd64", "7.2.13-1"),
    stanza("linux-binary-7.2.13+deb14-amd64", "7.2.13-1"),
    stanza("linux-modules-7.2.13+deb14-amd64", "7.2.13-1"),
    stanza("linux-base-7.2.13+deb14-amd64", "7.2.13-1"),
    stanza("linux-image-7.2.13+deb14-amd64", "7.2.13-1"),  # the new metapackage: not a kernel by itself
    stanza("linux-modules-7.3-amd64", "7.3~rc7-1~exp1"),  # binary and base missing: incomplete
    stanza("bash", "5.2-1"),
])


def test_stanzas_keep_only_kernel_packages():
    names = [s["Package"] for s in debian.parse_stanzas(PACKAGES)]
    assert "bash" not in names and "linux-image-6.1.0-57-amd64-dbg" in names
    assert all(set(s) == set(debian.STANZA_FIELDS) for s in debian.parse_stanzas(PACKAGES))


def test_both_packagings_and_only_the_generic_flavour():
    ks = {k.release: k for k in debian.kernels_of(debian.parse_stanzas(PACKAGES), SUITE)}
    assert set(ks) == {"6.1.0-57-amd64", "6.12.117+deb12-amd64", "7.2.13+deb14-amd64"}
    old, new = ks["6.1.0-57-amd64"], ks["7.2.13+deb14-amd64"]
    assert old.layout == "image" and [d.package for d in old.debs] == ["linux-image-6.1.0-57-amd64-unsigned"]
    assert old.dbg.package == "linux-image-6.1.0-57-amd64-dbg"
    assert new.layout == "split" and [d.package for d in new.debs] == [
        "linux-binary-unsigned-7.2.13+deb14-amd64", "linux-modules-7.2.13+deb14-amd64",
        "linux-base-7.2.13+deb14-amd64"]
    assert (old.line, ks["6.12.117+deb12-amd64"].line, new.line) == ("6.1", "6.12", "7.2")


@pytest.mark.parametrize("a,b", [
    ("6.1.192-3", "6.1.192-10"), ("7.3~rc7-1~exp1", "7.3-1"), ("6.12.117-1~deb12u1", "6.12.117-1"),
    ("1.0", "1:0.1"), ("6.12.95-1~bpo12+1", "6.12.95-1"), ("1.0a", "1.0b"), ("1.0", "1.0+x"), ("1.2", "1.10"),
])
def test_versions_in_dpkg_order(a, b):
    assert debian.compare_versions(a, b) == -1 and debian.compare_versions(b, a) == 1
    assert debian.compare_versions(a, a) == 0
    if shutil.which("dpkg"):
        assert subprocess.run(["dpkg", "--compare-versions", a, "lt", b], timeout=30).returncode == 0


def test_release_hashes():
    text = ("Origin: Debian\nMD5Sum:\n 00 1 main/binary-amd64/Packages.xz\nSHA256:\n"
            " " + "c" * 64 + " 10824484 main/binary-amd64/Packages.xz\n " + "d" * 64 + " 5 main/i18n/x\n")
    assert debian.release_hashes(text)["main/binary-amd64/Packages.xz"] == ("c" * 64, 10824484)


class FakeIndex:
    """An Index over synthetic suites (no network)."""

    def __init__(self, by_suite):
        self.by_suite = by_suite
        self.arch = "amd64"

    def kernels(self, suites):
        return [k for s in suites for k in self.by_suite.get(s.name, [])]


def fake(release, version, suite):
    return debian.DebianKernel(release, version, suite, "image", ())


@pytest.fixture
def index():
    return FakeIndex({
        "bookworm": [fake("6.1.0-50-amd64", "6.1.170-1", "bookworm")],
        "bookworm-security": [fake("6.1.0-57-amd64", "6.1.192-3", "bookworm-security"),
                              fake("6.12.117+deb12-amd64", "6.12.117-1~deb12u1", "bookworm-security")],
        "trixie": [fake("6.12.117+deb13-amd64", "6.12.117-1", "trixie")],
        "sid": [fake("7.2.13+deb14-amd64", "7.2.13-1", "sid")],
        "experimental": [fake("7.3-amd64", "7.3~rc7-1~exp1", "experimental")],
    })


@pytest.mark.parametrize("spec,release", [
    ("6.1", "6.1.0-57-amd64"), ("6.12", "6.12.117+deb13-amd64"), ("7.2", "7.2.13+deb14-amd64"),
    ("sid", "7.2.13+deb14-amd64"), ("unstable", "7.2.13+deb14-amd64"), ("experimental", "7.3-amd64"),
    ("7.3", "7.3-amd64"), ("trixie", "6.12.117+deb13-amd64"), ("bookworm", "6.12.117+deb12-amd64"),
    ("6.1.0-50-amd64", "6.1.0-50-amd64"),
])
def test_specs(index, spec, release):
    assert debian.resolve(spec, index).release == release


@pytest.mark.parametrize("spec,words", [
    ("5.10", ["no amd64 kernel of line 5.10", "6.1, 6.12, 7.2, 7.3", "sid"]),
    ("bullseye", ["not a Debian kernel line, suite or release", "bookworm", "experimental"]),
    ("6.1.0-99-amd64", ["no Debian suite has the kernel 6.1.0-99-amd64"]),
])
def test_unknown_spec_is_one_line_listing_what_exists(index, spec, words):
    with pytest.raises(KernelError) as exc:
        debian.resolve(spec, index)
    msg = str(exc.value)
    assert "\n" not in msg and all(w in msg for w in words), msg


def test_no_network_uses_the_cached_kernel(tmp_path, monkeypatch):
    paths = Paths(tmp_path)
    dk = debian.DebianKernel("7.2.13+deb14-amd64", "7.2.13-1", "sid", "split",
                             (debian.Deb("linux-binary-unsigned-7.2.13+deb14-amd64", "7.2.13-1", "pool/x.deb", 1,
                                         "ab", "debian"),))
    from harness.vm.cache import atomic_artifact
    root = paths.sub("debian") / "7.2.13+deb14-amd64_7.2.13-1"

    def unpacked(tmp):  # what an earlier run left: a complete, stamped unpack
        moddir = tmp / "usr" / "lib" / "modules" / dk.release
        moddir.mkdir(parents=True)
        (tmp / "lib").mkdir()
        (tmp / "lib" / "modules").symlink_to("../usr/lib/modules")
        (moddir / "vmlinuz.unsigned").write_bytes(b"x")
        (tmp / ".pinharness-ok").write_text("{}")
    atomic_artifact(root, unpacked, log=lambda s: None)
    from dataclasses import asdict
    (paths.sub("debian") / "spec-sid.json").write_text(json.dumps({"dir": root.name, **asdict(dk)}))

    def offline(*a, **kw):
        raise KernelError("cannot download http://deb.debian.org/debian/dists/sid/InRelease: no route")
    monkeypatch.setattr(debian, "download", offline)
    notes = []
    k = kernel_mod.from_debian("sid", paths, log=notes.append)
    assert k.release == dk.release and k.image == root / "lib" / "modules" / dk.release / "vmlinuz.unsigned"
    assert k.name == "debian-sid" and len(notes) == 1 and "using the cached 7.2.13+deb14-amd64" in notes[0]


def test_no_network_and_nothing_cached_is_one_line_error(tmp_path, monkeypatch):
    def offline(*a, **kw):
        raise KernelError("cannot download http://deb.debian.org/debian/dists/sid/InRelease: no route")
    monkeypatch.setattr(debian, "download", offline)
    with pytest.raises(KernelError, match="cannot download .*InRelease"):
        kernel_mod.from_debian("sid", Paths(tmp_path), log=lambda s: None)


def test_bad_signature_is_refused(tmp_path):
    if not shutil.which("gpgv") or not (debian.Path(debian.KEYRING).exists()):
        pytest.skip("gpgv or Debian's archive keyring missing (python -m harness setup installs them)")
    f = tmp_path / "InRelease"
    f.write_text("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nOrigin: Debian\n"
                 "-----BEGIN PGP SIGNATURE-----\n\niQIzBAEBCAAdFiEE\n-----END PGP SIGNATURE-----\n")
    with pytest.raises(KernelError, match="failed its signature check"):
        debian.verify_signature(f)


def test_linux_source_packages_are_kept_and_resolved():
    text = PACKAGES + "\n" + stanza("linux-source-7.2", "7.2.13-1") + "\n" + stanza("linux-source-6.1", "6.1.192-3")
    srcs = debian.sources_of(debian.parse_stanzas(text), SUITE)
    assert [s.package for s in srcs] == ["linux-source-7.2", "linux-source-6.1"]

    class SrcIndex:
        def suite_sources(self, suite):
            return srcs if suite.name == "sid" else []
    assert debian.resolve_source("7.2", SrcIndex()).version == "7.2.13-1"
    with pytest.raises(KernelError, match="no linux-source-5.10: lines with sources are 6.1, 7.2"):
        debian.resolve_source("5.10", SrcIndex())
    with pytest.raises(KernelError, match="not a kernel line"):
        debian.resolve_source("sid", SrcIndex())


def test_debian_src_spec_builds_and_other_specs_pass_through(tmp_path, monkeypatch):
    from harness.kbuild import debian_src
    calls = []
    monkeypatch.setattr(debian_src, "build_source", lambda line, paths, log, refresh: calls.append(line) or line)
    monkeypatch.setattr(kernel_mod, "resolve", lambda spec, paths, **kw: calls.append(spec) or spec)
    assert debian_src.resolve_spec("debian-src:7.2", Paths(tmp_path)) == "7.2"
    assert debian_src.resolve_spec("debian:sid", Paths(tmp_path)) == "debian:sid"
    assert calls == ["7.2", "debian:sid"]
