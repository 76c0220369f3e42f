"""Debian's kernels from Debian's own archive: signed indexes, any suite, both packagings.

The host's apt is never used: for each suite we fetch ``InRelease``, check its signature with
``gpgv`` against Debian's archive keyring, take ``main/binary-<arch>/Packages.xz`` (amd64, arm64) by the SHA256 the
Release file gives, and keep only the kernel stanzas (a small JSON file per suite, refreshed once a
day). A ``.deb`` is downloaded by the SHA256 its stanza gives, to a temporary name, and renamed into
place only when it matches.

Two packagings exist. Up to 6.12 one ``linux-image-<release>-unsigned`` holds ``/boot/vmlinuz-*``,
``/boot/config-*`` and ``/lib/modules/<release>``. From 7.x the kernel is split into
``linux-binary[-unsigned]-<release>`` (``/usr/lib/modules/<release>/vmlinuz``),
``linux-modules-<release>`` and ``linux-base-<release>`` (``config``, ``System.map``).
"""
from __future__ import annotations

import functools
import hashlib
import json
import lzma
import os
import re
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional

from harness.errors import KernelError
from harness.vm.host import Paths, require_space, require_tool

ARCH = "amd64"  # the default architecture (Debian's name); Index(arch=...) reads another
ARCHES = ("amd64", "arm64")
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
INDEX_TTL = 24 * 3600  # seconds an index is trusted before it is fetched again
TIMEOUT = 60  # seconds for one HTTP request to answer


@dataclass(frozen=True)
class Suite:
    name: str  # the dists/ name: "bookworm-security"
    archive: str  # "debian" or "debian-security" (a key of ARCHIVES)
    group: str  # the spec that names it: debian:bookworm covers bookworm and bookworm-security


# The suites a spec can reach, oldest first. A line (debian:6.12) takes the newest package of
# that line in any of them; a suite spec (debian:trixie) the newest kernel in its group.
SUITES = (
    Suite("bookworm", "debian", "bookworm"),
    Suite("bookworm-security", "debian-security", "bookworm"),
    Suite("bookworm-backports", "debian", "bookworm-backports"),
    Suite("trixie", "debian", "trixie"),
    Suite("trixie-security", "debian-security", "trixie"),
    Suite("sid", "debian", "sid"),
    Suite("experimental", "debian", "experimental"),
)
GROUP_ALIASES = {"unstable": "sid", "rc-buggy": "experimental"}

ARCHIVES = {  # archive -> (environment variable that overrides it, default URL)
    "debian": ("PINHARNESS_MIRROR", "http://deb.debian.org/debian"),
    "debian-security": ("PINHARNESS_SECURITY_MIRROR", "http://deb.debian.org/debian-security"),
}

# A generic kernel release: 6.1.0-57-amd64, 6.12.117+deb13-amd64, 7.2.13+deb14-arm64, 7.3-amd64.
# (cloud-amd64, rt-amd64 and arm64-16k flavours do not match: the part before the arch must end in digits.)
def release_re(arch: str) -> re.Pattern:
    return re.compile(rf"(?P<up>\d+\.\d+(?:\.\d+)*)(?:-\d+|\+deb\d+)?-{arch}")


RELEASE_RE = re.compile(rf"(?P<up>\d+\.\d+(?:\.\d+)*)(?:-\d+|\+deb\d+)?-(?:{'|'.join(ARCHES)})")


@functools.lru_cache(maxsize=None)
def package_roles(arch: str) -> tuple[tuple[str, re.Pattern], ...]:
    """package name -> (role, release), for one architecture's kernels."""
    rel = release_re(arch).pattern
    return (
        ("image", re.compile(rf"linux-image-(?P<rel>{rel})-unsigned")),
        ("binary", re.compile(rf"linux-binary-unsigned-(?P<rel>{rel})")),
        ("modules", re.compile(rf"linux-modules-(?P<rel>{rel})")),
        ("base", re.compile(rf"linux-base-(?P<rel>{rel})")),
        ("dbg", re.compile(rf"linux-image-(?P<rel>{rel})-dbg")),
    )


# Packages the harness takes from the archive besides kernels, for a guest whose architecture is not
# the host's: a static busybox for its initramfs, and the libraries cross-compiled workloads link
# against (the host's own serve the host's architecture).
TOOL_PACKAGES = ("busybox-static", "libibverbs-dev", "libibverbs1")
KEEP_PACKAGE = re.compile(r"^Package: (?:linux-(?:image|binary-unsigned|modules|base|source)-\d|"
                          + "|".join(re.escape(p) for p in TOOL_PACKAGES) + r"\n)", re.M)
SOURCE_RE = re.compile(r"linux-source-(?P<line>\d+\.\d+)")
INDEX_FORMAT = 4  # bump when the cached JSON changes shape: older files are fetched anew
STANZA_FIELDS = ("Package", "Version", "Filename", "Size", "SHA256")


@dataclass(frozen=True)
class Deb:
    package: str
    version: str
    filename: str  # pool/main/l/linux/...deb, relative to the archive
    size: int
    sha256: str
    archive: str


@dataclass(frozen=True)
class DebianKernel:
    """One generic amd64 kernel as Debian ships it."""

    release: str  # `uname -r`: 7.2.13+deb14-amd64
    version: str  # the Debian version: 7.2.13-1
    suite: str
    layout: str  # "image" (one linux-image-*-unsigned) or "split" (binary + modules + base)
    debs: tuple[Deb, ...]
    dbg: Optional[Deb] = None

    @property
    def line(self) -> str:
        return ".".join(self.upstream.split(".")[:2])

    @property
    def upstream(self) -> str:
        return RELEASE_RE.fullmatch(self.release)["up"]


# --------------------------------------------------------------------------- versions

def _order(c: str) -> int:
    if c == "~":
        return -1
    if c.isalpha():
        return ord(c)
    return ord(c) + 256


def _cmp_part(a: str, b: str) -> int:
    """dpkg's comparison of an upstream version or a revision."""
    i = j = 0
    while i < len(a) or j < len(b):
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ca = _order(a[i]) if i < len(a) and not a[i].isdigit() else 0
            cb = _order(b[j]) if j < len(b) and not b[j].isdigit() else 0
            if ca != cb:
                return -1 if ca < cb else 1
            i += i < len(a) and not a[i].isdigit()
            j += j < len(b) and not b[j].isdigit()
        da = re.match(r"\d*", a[i:]).group()
        db = re.match(r"\d*", b[j:]).group()
        i += len(da)
        j += len(db)
        na, nb = int(da or 0), int(db or 0)
        if na != nb:
            return -1 if na < nb else 1
    return 0


def compare_versions(a: str, b: str) -> int:
    """Debian version order (epoch:upstream-revision), as `dpkg --compare-versions`."""
    def split(v: str) -> tuple[int, str, str]:
        epoch, _, rest = v.rpartition(":") if ":" in v else ("0", "", v)
        up, _, rev = rest.rpartition("-") if "-" in rest else (rest, "", "0")
        return int(epoch or 0), up, rev
    ea, ua, ra = split(a)
    eb, ub, rb = split(b)
    if ea != eb:
        return -1 if ea < eb else 1
    return _cmp_part(ua, ub) or _cmp_part(ra, rb)


def _newest(kernels: Iterable[DebianKernel]) -> Optional[DebianKernel]:
    def key(a: DebianKernel, b: DebianKernel) -> int:
        return compare_versions(a.upstream, b.upstream) or compare_versions(a.version, b.version)
    ks = list(kernels)
    return max(ks, key=functools.cmp_to_key(key)) if ks else None


# --------------------------------------------------------------------------- indexes

def parse_stanzas(text: str) -> list[dict[str, str]]:
    """The kernel stanzas of a Packages file (only the fields we use)."""
    out = []
    for m in KEEP_PACKAGE.finditer(text):
        end = text.find("\n\n", m.start())
        block = text[m.start():end if end >= 0 else len(text)]
        fields = {}
        for line in block.split("\n"):
            key, sep, value = line.partition(": ")
            if sep and key in STANZA_FIELDS:
                fields[key] = value.strip()
        if len(fields) == len(STANZA_FIELDS):
            out.append(fields)
    return out


def kernels_of(stanzas: list[dict[str, str]], suite: Suite, arch: str = ARCH) -> list[DebianKernel]:
    """Group a suite's kernel stanzas (of ``arch``) into kernels of either packaging."""
    by_rel: dict[tuple[str, str], dict[str, Deb]] = {}
    for st in stanzas:
        for role, rx in package_roles(arch):
            m = rx.fullmatch(st["Package"])
            if m:
                deb = Deb(st["Package"], st["Version"], st["Filename"], int(st["Size"]), st["SHA256"], suite.archive)
                by_rel.setdefault((m["rel"], st["Version"]), {})[role] = deb
                break
    kernels = []
    for (rel, version), roles in by_rel.items():
        if "image" in roles:
            kernels.append(DebianKernel(rel, version, suite.name, "image", (roles["image"],), roles.get("dbg")))
        elif {"binary", "modules", "base"} <= roles.keys():
            debs = (roles["binary"], roles["modules"], roles["base"])
            kernels.append(DebianKernel(rel, version, suite.name, "split", debs, roles.get("dbg")))
    return kernels


def tools_of(stanzas: list[dict[str, str]], suite: Suite) -> list[Deb]:
    """The TOOL_PACKAGES of a suite."""
    return [Deb(st["Package"], st["Version"], st["Filename"], int(st["Size"]), st["SHA256"], suite.archive)
            for st in stanzas if st["Package"] in TOOL_PACKAGES]


def sources_of(stanzas: list[dict[str, str]], suite: Suite) -> list[Deb]:
    """The linux-source-X.Y packages of a suite (the kernel tree as a tarball)."""
    return [Deb(st["Package"], st["Version"], st["Filename"], int(st["Size"]), st["SHA256"], suite.archive)
            for st in stanzas if SOURCE_RE.fullmatch(st["Package"])]


def release_hashes(inrelease: str) -> dict[str, tuple[str, int]]:
    """path -> (sha256, size) from a Release file's SHA256 section."""
    out: dict[str, tuple[str, int]] = {}
    in_sha = False
    for line in inrelease.splitlines():
        if not line.startswith(" "):
            in_sha = line.startswith("SHA256:")
            continue
        if in_sha:
            parts = line.split()
            if len(parts) == 3:
                out[parts[2]] = (parts[0], int(parts[1]))
    return out


def verify_signature(path: Path, keyring: Optional[str] = None) -> None:
    """gpgv over an InRelease file: at least one valid signature by a key of the keyring."""
    keyring = keyring or os.environ.get("PINHARNESS_DEBIAN_KEYRING", KEYRING)
    if not Path(keyring).exists():
        raise KernelError(f"Debian's archive keyring {keyring} is missing: run `python -m harness setup` "
                          "(installs debian-archive-keyring) or set PINHARNESS_DEBIAN_KEYRING")
    gpgv = require_tool("gpgv")
    proc = subprocess.run([gpgv, "--status-fd", "1", "--keyring", keyring, str(path)],
                          capture_output=True, text=True, timeout=60)
    status = proc.stdout.splitlines()
    if any(s.startswith("[GNUPG:] BADSIG") for s in status) or not any(
            s.startswith("[GNUPG:] VALIDSIG") for s in status):
        why = (proc.stderr.strip().splitlines() or ["no valid signature"])[-1]
        raise KernelError(f"{path.name} of Debian's archive failed its signature check ({why}): "
                          "a broken mirror or an outdated keyring (apt-get install debian-archive-keyring)")


Progress = Callable[[int, int], None]


def download(url: str, dest: Path, sha256: Optional[str] = None, size: Optional[int] = None,
             progress: Optional[Progress] = None, timeout: float = TIMEOUT) -> Path:
    """url -> dest, through a temporary name beside it; checked against sha256/size; nothing left on failure."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if size:
        require_space(dest.parent, size + (16 << 20), f"downloading {dest.name}")
    fd, tmp_name = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        h = hashlib.sha256()
        done = 0
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            total = size or int(resp.headers.get("Content-Length") or 0)
            while True:
                chunk = resp.read(1 << 20)
                if not chunk:
                    break
                out.write(chunk)
                h.update(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
        if size is not None and done != size:
            raise KernelError(f"{url}: got {done} bytes, the index says {size}: the download was cut short")
        if sha256 is not None and h.hexdigest() != sha256:
            raise KernelError(f"{url}: SHA256 mismatch against the signed index (a broken mirror or proxy)")
        tmp.rename(dest)
        return dest
    except (urllib.error.URLError, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno == 28:
            raise KernelError(f"no space left in {dest.parent} while downloading {dest.name}") from None
        reason = getattr(exc, "reason", exc)
        raise KernelError(f"cannot download {url}: {reason}") from None
    finally:
        tmp.unlink(missing_ok=True)


def _archive_url(archive: str) -> str:
    env, default = ARCHIVES[archive]
    return os.environ.get(env, default).rstrip("/")


@dataclass
class Index:
    """The kernels of Debian's suites, read from signed indexes cached under ``<cache>/debian-index``."""

    paths: Paths
    refresh: bool = False  # fetch even when the cached index is fresh
    log: Callable[[str], None] = print
    arch: str = ARCH  # Debian's architecture name: amd64 | arm64

    def suite_kernels(self, suite: Suite) -> list[DebianKernel]:
        data = self._suite_data(suite)
        return [DebianKernel(k["release"], k["version"], k["suite"], k["layout"],
                             tuple(Deb(**d) for d in k["debs"]), Deb(**k["dbg"]) if k.get("dbg") else None)
                for k in data["kernels"]]

    def suite_sources(self, suite: Suite) -> list[Deb]:
        return [Deb(**d) for d in self._suite_data(suite)["sources"]]

    def suite_tools(self, suite: Suite) -> list[Deb]:
        return [Deb(**d) for d in self._suite_data(suite).get("tools", [])]

    def _suite_data(self, suite: Suite) -> dict:
        name = suite.name if self.arch == ARCH else f"{suite.name}-{self.arch}"
        cache = self.paths.sub("debian-index") / f"{name}.json"
        fresh = (cache.exists() and time.time() - cache.stat().st_mtime < INDEX_TTL
                 and json.loads(cache.read_text()).get("format") == INDEX_FORMAT)
        if not fresh or self.refresh:
            try:
                self._fetch(suite, cache)
            except KernelError as exc:
                if not cache.exists():
                    raise
                self.log(f"pinharness: note: cannot refresh Debian's {suite.name} index ({exc}); using the cached one")
        data = json.loads(cache.read_text())
        data.setdefault("sources", [])
        return data

    def _fetch(self, suite: Suite, cache: Path) -> None:
        base = f"{_archive_url(suite.archive)}/dists/{suite.name}"
        with tempfile.TemporaryDirectory(prefix="ph-index-", dir=cache.parent) as tmpd:
            inrelease = download(f"{base}/InRelease", Path(tmpd) / "InRelease")
            verify_signature(inrelease)
            hashes = release_hashes(inrelease.read_text(errors="replace"))
            rel_path = f"main/binary-{self.arch}/Packages.xz"
            if rel_path not in hashes:
                raise KernelError(f"Debian's {suite.name} Release lists no {rel_path}")
            sha, size = hashes[rel_path]
            xz = download(f"{base}/{rel_path}", Path(tmpd) / "Packages.xz", sha256=sha, size=size)
            text = lzma.decompress(xz.read_bytes()).decode("utf-8", errors="replace")
        stanzas = parse_stanzas(text)
        kernels, sources = kernels_of(stanzas, suite, self.arch), sources_of(stanzas, suite)
        tools = tools_of(stanzas, suite)
        tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"format": INDEX_FORMAT, "suite": suite.name,
                                   "kernels": [asdict(k) for k in kernels], "sources": [asdict(s) for s in sources],
                                   "tools": [asdict(t) for t in tools]}))
        tmp.replace(cache)

    def kernels(self, suites: Iterable[Suite]) -> list[DebianKernel]:
        return [k for s in suites for k in self.suite_kernels(s)]


def groups() -> list[str]:
    return list(dict.fromkeys(s.group for s in SUITES))


def resolve(spec: str, index: Index) -> DebianKernel:
    """debian:<spec>: a line (6.1, 7.2), a suite (sid, trixie, experimental...) or an exact release."""
    group = GROUP_ALIASES.get(spec, spec)
    if group in groups():
        found = _newest(index.kernels(s for s in SUITES if s.group == group))
        if found is None:
            raise KernelError(f"Debian's {group} has no generic {index.arch} kernel")
        return found
    if release_re(index.arch).fullmatch(spec):
        found = _newest(k for k in index.kernels(SUITES) if k.release == spec)
        if found is None:
            raise KernelError(f"no Debian suite has the kernel {spec}: lines there are "
                              f"{', '.join(_lines(index))}; or use debian:<suite> ({', '.join(groups())})")
        return found
    if re.fullmatch(r"\d+\.\d+", spec):
        found = _newest(k for k in index.kernels(SUITES) if k.line == spec)
        if found is None:
            raise KernelError(f"Debian has no {index.arch} kernel of line {spec}: lines are {', '.join(_lines(index))}; "
                              f"suites are {', '.join(groups())}")
        return found
    raise KernelError(f"debian:{spec} is not a Debian kernel line, suite or release: use a line "
                      f"({', '.join(_lines(index))}), a suite ({', '.join(groups())}) or a release such as "
                      f"debian:6.1.0-57-{index.arch}")


def resolve_source(line: str, index: Index) -> Deb:
    """debian-src:<line>: the newest linux-source-<line> package in any suite."""
    if not re.fullmatch(r"\d+\.\d+", line):
        raise KernelError(f"debian-src:{line} is not a kernel line: use e.g. debian-src:7.2")
    found = [d for s in SUITES for d in index.suite_sources(s) if d.package == f"linux-source-{line}"]
    if not found:
        have = sorted({d.package.rsplit("-", 1)[1] for s in SUITES for d in index.suite_sources(s)},
                      key=lambda v: tuple(int(x) for x in v.split(".")))
        raise KernelError(f"Debian has no linux-source-{line}: lines with sources are {', '.join(have)}")
    return max(found, key=functools.cmp_to_key(lambda a, b: compare_versions(a.version, b.version)))


def resolve_tool(package: str, index: Index, group: str = "bookworm") -> Deb:
    """The newest ``package`` (one of TOOL_PACKAGES) of ``index``'s architecture in the suites of ``group``."""
    found = [d for s in SUITES if s.group == group for d in index.suite_tools(s) if d.package == package]
    if not found:
        raise KernelError(f"Debian's {group} has no {package} for {index.arch}")
    return max(found, key=functools.cmp_to_key(lambda a, b: compare_versions(a.version, b.version)))


def _lines(index: Index) -> list[str]:
    lines = {k.line for k in index.kernels(SUITES)}
    return sorted(lines, key=lambda v: tuple(int(x) for x in v.split(".")))


def deb_url(deb: Deb) -> str:
    """Where the .deb is downloaded from (the archive's mirror, ``PINHARNESS_MIRROR`` honoured)."""
    return f"{_archive_url(deb.archive)}/{deb.filename}"


def fetch_deb(deb: Deb, paths: Paths, progress: Optional[Progress] = None) -> Path:
    """The .deb in the cache (downloaded and checked once)."""
    dest = paths.sub("debs") / Path(deb.filename).name
    if dest.exists() and dest.stat().st_size == deb.size:
        return dest
    return download(deb_url(deb), dest, sha256=deb.sha256, size=deb.size,
                    progress=progress)
