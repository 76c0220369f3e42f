"""--shard i/n: every cell in exactly one shard, balanced, independent of the input order."""
import argparse
import random

import pytest

from harness.cli import parser as cli
from harness.errors import HarnessError
from harness.pins.matrix import cells
from harness.results.shard import Shard, shard_arg
from harness.pins.workloads import WORKLOADS


@pytest.fixture
def matrix():
    return cells(["debian:6.1", "debian:6.12", "tree:/src/linux"], list(WORKLOADS), ["ext4", "xfs"],
                 ["reclaim", "none", "bh-fill+reclaim"])


@pytest.mark.parametrize("n", [1, 2, 3, 4, 7, 100])
def test_every_cell_in_exactly_one_shard(matrix, n):
    shards = [Shard(i, n).select(matrix) for i in range(1, n + 1)]
    ids = [c.id for s in shards for c in s]
    assert sorted(ids) == sorted(c.id for c in matrix)
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1
    for s in shards:  # the matrix's own order is kept within a shard
        assert s == [c for c in matrix if c in s]


def test_split_does_not_depend_on_argument_order(matrix):
    shuffled = list(matrix)
    random.Random(7).shuffle(shuffled)
    for i in (1, 2, 3):
        assert set(Shard(i, 3).select(matrix)) == set(Shard(i, 3).select(shuffled))


@pytest.mark.parametrize("text", ["0/3", "4/3", "1", "a/b", "1/0", ""])
def test_bad_shard(text):
    with pytest.raises(HarnessError, match="bad shard"):
        Shard.parse(text)
    with pytest.raises(argparse.ArgumentTypeError):
        shard_arg(text)


def test_parse_and_cli(capsys):
    assert Shard.parse(" 2 / 5 ") == Shard(2, 5) and str(Shard(2, 5)) == "2/5"
    args = cli.build_parser().parse_args(["run", "--shard", "2/4", "--ktap", "--kcidb", "--html"])
    assert args.shard == Shard(2, 4) and args.ktap and args.kcidb and args.html and args.previous is None
    with pytest.raises(SystemExit) as exc:
        cli.build_parser().parse_args(["run", "--shard", "5/4"])
    assert exc.value.code == 2 and "bad shard" in capsys.readouterr().err
