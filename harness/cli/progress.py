"""What a long command prints while it works, for a person watching it.

Every line is stamped with the time since the start (``[2:13] ...``); the matrix adds an ETA
once ``eta_after`` cells have run; ``download(label)`` returns the callback that code which
downloads (kernels) calls as ``progress(done_bytes, total_bytes)`` (total 0 when unknown): it
prints a line at most every ``download_every`` seconds, and one when the download is complete.
One ``Progress`` per command, passed around (threads share it: printing is locked).
"""
from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, TextIO

DownloadProgress = Callable[[int, int], None]  # progress(done_bytes, total_bytes)


def clock_text(seconds: float) -> str:
    """2:13, 1:02:13."""
    s = int(max(0, seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def size_text(n: int) -> str:
    return f"{n / (1 << 20):.1f} MB"


@dataclass
class Progress:
    stream: TextIO = field(default_factory=lambda: sys.stderr)
    clock: Callable[[], float] = time.monotonic
    jobs: int = 1  # guests at once: cells finish this many times faster than one by one
    eta_after: int = 3  # cells that must have run before an ETA is printed
    download_every: float = 5.0  # seconds between download progress lines
    total: int = 0  # cells in the matrix
    start: float = field(init=False)
    done: int = field(default=0, init=False)
    _seconds: list[float] = field(default_factory=list, init=False)  # wall time of each cell that ran
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        self.start = self.clock()

    def elapsed(self) -> float:
        return self.clock() - self.start

    def log(self, message: str) -> None:
        with self._lock:
            print(f"[{clock_text(self.elapsed())}] {message}", file=self.stream, flush=True)

    # ------------------------------------------------------------------ the matrix
    def cell_done(self, seconds: float, ran: bool = True) -> None:
        """A cell is finished (``ran``: it booted guests, rather than being skipped)."""
        with self._lock:
            self.done += 1
            if ran:
                self._seconds.append(seconds)

    def eta(self) -> Optional[float]:
        """Seconds until the matrix is done, once ``eta_after`` cells have run (else None)."""
        if len(self._seconds) < self.eta_after or self.done >= self.total:
            return None
        per_cell = sum(self._seconds) / len(self._seconds)
        return per_cell * (self.total - self.done) / max(1, self.jobs)

    def eta_text(self) -> str:
        """', ETA 12:40 (14 cells left)' or ''."""
        left = self.eta()
        if left is None:
            return ""
        return f", ETA {clock_text(left)} ({self.total - self.done} cells left)"

    # ------------------------------------------------------------------ downloads
    def download(self, label: str) -> DownloadProgress:
        """The ``progress(done_bytes, total_bytes)`` callback for downloading ``label``."""
        last = [float("-inf")]

        def progress(done: int, total: int) -> None:
            now = self.clock()
            finished = total > 0 and done >= total
            if not finished and now - last[0] < self.download_every:
                return
            last[0] = now
            if total > 0:
                self.log(f"pinharness: downloading {label}: {size_text(done)} of {size_text(total)} "
                         f"({100 * done // total}%)" + (", done" if finished else ""))
            else:
                self.log(f"pinharness: downloading {label}: {size_text(done)}")

        return progress
