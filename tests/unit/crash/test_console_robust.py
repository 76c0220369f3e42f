"""The parser never raises: truncated logs, binary garbage, a 100 MB log."""
import random
import time
from pathlib import Path

import pytest

from harness.crash.console import parse, parse_bytes

GOLDEN = Path(__file__).resolve().parents[2] / "golden" / "console"
LOGS = sorted(GOLDEN.glob("*.log"))


@pytest.mark.parametrize("path", LOGS, ids=lambda p: p.stem)
def test_every_prefix_of_a_golden_log_parses(path):
    text = path.read_text(errors="replace")
    step = max(1, len(text) // 150)
    for cut in range(0, len(text), step):
        for rep in parse(text[:cut]):
            assert rep.title and 0 <= rep.start < rep.end <= cut


def test_random_binary_garbage():
    rng = random.Random(1234)
    for _ in range(200):
        data = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 4000)))
        assert isinstance(parse_bytes(data), list)


def test_garbage_spliced_into_reports():
    rng = random.Random(99)
    warn = (GOLDEN / "syzbot-warning-ext4_dirty_folio.log").read_bytes()
    for _ in range(100):
        cut = rng.randrange(len(warn))
        noise = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200)))
        for rep in parse_bytes(warn[:cut] + noise + warn[cut:]):
            assert rep.title


def test_headers_only_garbage():
    markers = ["WARNING:", "BUG:", "INFO:", "kernel BUG", "Kernel panic", "general protection fault",
               "UBSAN:", "XFS (", "EXT4-fs error", "Buffer I/O error", "page dumped because"]
    rng = random.Random(7)
    text = "\n".join(rng.choice(markers) + rng.choice(["", " x", "\t", " at a.c:1 f+0x1/0x2", "(("])
                     for _ in range(3000))
    reps = parse(text)
    assert reps and all(r.title for r in reps)


def test_100_mb_log():
    warn = (GOLDEN / "bugzilla-205417-warning-ext4_set_page_dirty-module.log").read_text()
    noise = "".join(f"[{i / 1000:12.6f}] fio: wrote block {i} of /mnt/f{i % 7}\n" for i in range(2000))
    parts, size, i = [], 0, 0
    while size < 100_000_000:
        chunk = warn if i % 50 == 0 else noise
        parts.append(chunk)
        size += len(chunk)
        i += 1
    text = "".join(parts)
    t0 = time.monotonic()
    reps = parse(text)
    elapsed = time.monotonic() - t0
    assert len(reps) == sum(1 for p in parts if p is warn)
    assert {r.title for r in reps} == {"WARNING in ext4_set_page_dirty"}
    print(f"parsed {len(text) / 1e6:.0f} MB in {elapsed:.1f} s")
