"""``--shard i/n``: split the matrix across runners, deterministically.

The cells are sorted by id and dealt round-robin: shard i of n gets every n-th cell starting
at the i-th (``sorted(cells)[i-1::n]``). The same cells in any order give the same split,
every cell lands in exactly one shard, and shard sizes differ by at most one. Within a
shard the cells keep the order the matrix gave them.
"""
from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from typing import Sequence, TypeVar

from harness.errors import HarnessError

T = TypeVar("T")


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based
    count: int

    @classmethod
    def parse(cls, text: str) -> "Shard":
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
        if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
            raise HarnessError(f"bad shard {text!r}: use i/n with 1 <= i <= n, e.g. --shard 2/4")
        return cls(int(m.group(1)), int(m.group(2)))

    def select(self, cells: Sequence[T], key=lambda c: c.id) -> list[T]:
        order = sorted(range(len(cells)), key=lambda i: (key(cells[i]), i))
        mine = set(order[self.index - 1::self.count])
        return [c for i, c in enumerate(cells) if i in mine]

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def shard_arg(text: str) -> Shard:
    """argparse ``type=``: a bad value is argparse's one-line usage error."""
    try:
        return Shard.parse(text)
    except HarnessError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
