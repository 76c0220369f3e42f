"""Cached artifacts that are never half-written, never half-read and never silently poisoned.

An artifact (a file or a directory) is built under a temporary name unique to the process,
renamed into place only when complete, and recorded beside it (``NAME.stamp``: size and
sha256). Every use checks the record; a missing or mismatching record means the artifact is
rebuilt, with a one-line note. Builders of the same artifact serialize on ``NAME.lock``
(fcntl.flock, with a timeout): the second one waits, then finds the first one's result.

    path = atomic_artifact(cache_dir / "rootfs.ext4", build=lambda tmp: make_image(tmp))
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

from harness.errors import CacheLocked, HarnessError, named_enospc

LOCK_TIMEOUT = 1800.0  # seconds to wait for another process building the same artifact
LOCK_POLL = 0.2

Verify = Callable[[Path], Optional[str]]  # extra check on use: None when fine, else what is wrong


@dataclass(frozen=True)
class Stamp:
    """What a complete artifact looked like when it was built."""

    size: int  # bytes (of every file, for a directory)
    sha256: str
    fingerprint: str = ""  # of the inode metadata after the rename (see ``fingerprint``)

    @classmethod
    def of(cls, path: Path) -> "Stamp":
        if path.is_dir() and not path.is_symlink():
            h, size = hashlib.sha256(), 0
            for p in sorted(path.rglob("*")):
                rel = p.relative_to(path).as_posix().encode()
                if p.is_symlink():
                    h.update(b"L" + rel + b"\0" + os.readlink(p).encode() + b"\0")
                elif p.is_file():
                    digest, n = _file_digest(p)
                    h.update(b"F" + rel + b"\0" + digest.encode() + b"\0")
                    size += n
                elif p.is_dir():
                    h.update(b"D" + rel + b"\0")
            return cls(size, h.hexdigest())
        digest, size = _file_digest(path)
        return cls(size, digest)

    def differs(self, other: "Stamp") -> Optional[str]:
        """What differs in content (size, sha256) from ``other``, or None."""
        if self.size != other.size:
            return f"{other.size} bytes, {self.size} recorded"
        if self.sha256 != other.sha256:
            return "its sha256 differs from the recorded one"
        return None


def fingerprint(path: Path) -> str:
    """A digest of (name, size, mtime, ctime, inode) of ``path`` and everything under it: any write,
    truncation, chmod or replacement changes a ctime, so an equal fingerprint means unchanged content
    without reading it; a different one means hashing the content again."""
    h = hashlib.sha256()
    entries = [path, *sorted(path.rglob("*"))] if path.is_dir() and not path.is_symlink() else [path]
    for p in entries:
        st = p.lstat()
        h.update(f"{p.relative_to(path)}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}\n".encode())
    return h.hexdigest()


def _file_digest(path: Path) -> tuple[str, int]:
    h, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def stamp_path(path: Path) -> Path:
    return path.with_name(path.name + ".stamp")


def lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def temp_path(path: Path) -> Path:
    """The name an artifact is built under: unique to this process, beside the final name."""
    return path.with_name(f"{path.name}.tmp-{os.getpid()}")


def problem(path: Path, verify: Optional[Verify] = None) -> Optional[str]:
    """None when ``path`` is complete (it matches its recorded stamp, and ``verify`` agrees), else why not."""
    path = Path(path)
    if not path.exists():
        return "missing"
    try:
        recorded = Stamp(**json.loads(stamp_path(path).read_text()))
    except FileNotFoundError:
        return "no size/hash record: an interrupted or older build"
    except (ValueError, TypeError):
        return "its size/hash record is unreadable"
    why = None if recorded.fingerprint == fingerprint(path) else recorded.differs(Stamp.of(path))
    if why is None and verify is not None:
        why = verify(path)
    return why


def remove(path: Path) -> None:
    """Remove a file, a symlink or a directory tree (read-only directories included); missing is fine."""
    def make_writable(func, p, _exc):
        os.chmod(os.path.dirname(p), 0o755)
        func(p)

    if path.is_dir() and not path.is_symlink():
        for d in [path, *(p for p in path.rglob("*") if p.is_dir() and not p.is_symlink())]:
            with contextlib.suppress(OSError):
                os.chmod(d, 0o755)
        shutil.rmtree(path, onerror=make_writable)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def adopt(path: Path, verify: Verify) -> None:
    """Stamp ``path``, written complete (by a rename) before artifacts were stamped, when ``verify``
    finds nothing wrong with it; an artifact already stamped, or one that fails, is left alone."""
    with artifact_lock(path):
        if path.exists() and not stamp_path(path).exists() and verify(path) is None:
            stamp = Stamp.of(path)
            record = temp_path(stamp_path(path))
            record.write_text(json.dumps(asdict(Stamp(stamp.size, stamp.sha256, fingerprint(path)))))
            os.rename(record, stamp_path(path))


@contextlib.contextmanager
def artifact_lock(path: Path, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """Hold ``path``'s build lock (flock on NAME.lock); CacheLocked after ``timeout`` s of waiting."""
    lock = lock_path(Path(path))
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            if time.monotonic() >= deadline:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                raise CacheLocked(f"{path} is being built by another pinharness process (pid {holder}) for more "
                                  f"than {timeout:.0f}s: wait for it, or remove {lock} if that process is gone")
            time.sleep(LOCK_POLL)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the flock


def atomic_artifact(path: Path, build: Callable[[Path], None], verify: Optional[Verify] = None,
                    log: Callable[[str], None] = print, force: bool = False,
                    lock_timeout: float = LOCK_TIMEOUT) -> Path:
    """``path``, built by ``build(tmp)`` unless a complete one is there.

    ``build`` writes the artifact (file or directory) at the ``tmp`` path it is given; it is
    renamed to ``path`` and stamped only when ``build`` returns. A build that raises leaves
    nothing behind. An artifact that fails its stamp (or ``verify``) is rebuilt with a note."""
    path = Path(path)
    if not force and problem(path, verify) is None:
        return path
    with artifact_lock(path, lock_timeout):
        why = "rebuild requested" if force else problem(path, verify)
        if why is None:  # another process built it while we waited
            return path
        if why != "missing":
            log(f"pinharness: cached {path} is unusable ({why}); rebuilding it")
        for stale in [path, stamp_path(path), *path.parent.glob(f"{path.name}.tmp-*"),
                      *path.parent.glob(f"{stamp_path(path).name}.tmp-*")]:
            remove(stale)  # under the lock, no live process is writing any of these
        tmp, record = temp_path(path), temp_path(stamp_path(path))
        try:
            with named_enospc(path.parent, f"building {path.name}"):
                build(tmp)
                if not tmp.exists():
                    raise HarnessError(f"building {path} produced nothing at {tmp}")
                stamp = Stamp.of(tmp)
                os.rename(tmp, path)
                stamp = Stamp(stamp.size, stamp.sha256, fingerprint(path))
                record.write_text(json.dumps(asdict(stamp)))
                os.rename(record, stamp_path(path))
        except BaseException:
            for partial in (tmp, record, path, stamp_path(path)):
                remove(partial)
            raise
    return path
