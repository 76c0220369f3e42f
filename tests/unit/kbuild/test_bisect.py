"""The bisect driver on a real git repository, with a fake step runner (build/boot/run mocked).

Each commit of the repository has a file ``state`` that tells the fake runner what
the commit's "kernel" does: bad (the target warning), good, nobuild, other (an
unrelated crash), infra (never boots), or flaky:PATTERN (per attempt, 1 = warning).
Its digest is the hash of ``state``: commits that only touch README build the
same "kernel".
"""
from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from harness.kbuild import bisect as B
from harness.kbuild.bisect import Build, Bisector, BisectError, BisectOptions, Signature

TARGET = Signature("WARNING", ("WARNING in ext4_dirty_folio",))
OUTCOMES = {
    "bad": TARGET,
    "good": Signature("CLEAN"),
    "fixed": Signature("PROTECTED", errno=14),
    "other": Signature("CRASH", ("BUG: unable to handle page fault for address",)),
    "infra": Signature(B.INFRA, detail="BootTimeout"),
}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          timeout=60).stdout.strip()


def make_repo(path: Path, states: list) -> list[str]:
    """One commit per entry: a state string, or ("README", text) for a change that builds the same kernel."""
    path.mkdir()
    git(path, "-c", "init.defaultBranch=main", "init", "-q")
    git(path, "config", "user.email", "t@example.com")
    git(path, "config", "user.name", "t")
    commits = []
    for i, st in enumerate(states):
        if isinstance(st, tuple):
            (path / st[0]).write_text(st[1])
            git(path, "add", st[0])
        else:
            (path / "state").write_text(f"{st}\n{i}\n")  # each commit its own kernel
            git(path, "add", "state")
        git(path, "commit", "-q", "-m", f"commit {i}: {st if isinstance(st, str) else st[0]}")
        commits.append(git(path, "rev-parse", "HEAD"))
    return commits


class FakeRunner:
    def __init__(self, raise_on_build: int = -1, exc: BaseException = KeyboardInterrupt()):
        self.builds: list[str] = []
        self.runs: list[tuple[str, int]] = []
        self.raise_on_build = raise_on_build
        self.exc = exc

    def build(self, src: Path, commit: str) -> Build:
        self.builds.append(commit)
        if len(self.builds) == self.raise_on_build:
            raise self.exc
        assert git(src, "rev-parse", "HEAD") == commit  # the driver checked the commit out
        content = (src / "state").read_text()
        state = content.split("\n", 1)[0]
        if state == "nobuild":
            return Build(False, seconds=1.0, detail="kernel build failed: mm/gup.c:1: error: oops")
        return Build(True, hashlib.sha256(content.encode()).hexdigest(), 2.0, handle=(commit, state))

    def run(self, build: Build, attempt: int) -> Signature:
        commit, state = build.handle
        self.runs.append((commit, attempt))
        if state.startswith("flaky:"):
            pattern = state.split(":", 1)[1]
            return TARGET if pattern[attempt % len(pattern)] == "1" else OUTCOMES["good"]
        return OUTCOMES[state]


def no_bisect_left(repo: Path, workdir: Path) -> None:
    lines = git(repo, "worktree", "list", "--porcelain").splitlines()
    assert [ln for ln in lines if ln.startswith("worktree ")] == [f"worktree {repo}"]
    assert not (workdir / "worktree").exists()
    assert not (repo / ".git" / "worktrees").exists() or not any((repo / ".git" / "worktrees").iterdir())
    assert not (repo / ".git" / "BISECT_LOG").exists()
    assert git(repo, "for-each-ref", "refs/bisect") == ""


def options(repo: Path, tmp_path: Path, good: str, bad: str, **kw) -> BisectOptions:
    return BisectOptions(tree=repo, good=good, bad=bad, workdir=tmp_path / "work", log=tmp_path / "bisect.json", **kw)


def test_cause_bisect_names_the_commit_and_leaves_nothing(tmp_path):
    repo = tmp_path / "repo"
    c = make_repo(repo, ["good"] * 6 + ["bad"] * 4)
    (repo / "README").write_text("user's uncommitted work")  # the user's checkout must stay as it is
    runner = FakeRunner()
    res = Bisector(options(repo, tmp_path, c[0], c[-1]), runner, log=lambda s: None).run()
    assert res.commit == c[6]
    assert res.subject == "commit 6: bad"
    assert res.target == TARGET
    assert (res.reproduced, res.endpoint_runs) == (3, 3)
    assert res.runs_per_step == 2  # rate (3+1)/(3+2) = 0.8 -> 2 runs for 95 %
    assert 0.9 < res.confidence <= 1.0
    assert git(repo, "rev-parse", "HEAD") == c[-1] and git(repo, "rev-parse", "--abbrev-ref", "HEAD") == "main"
    assert (repo / "README").read_text() == "user's uncommitted work"
    no_bisect_left(repo, tmp_path / "work")
    import json

    log = json.loads((tmp_path / "bisect.json").read_text())
    assert log["result"]["commit"] == c[6]
    assert log["steps"][0]["label"] == "bad end" and log["steps"][0]["verdict"] == "bad"
    assert all(s["build_seconds"] == 2.0 for s in log["steps"])
    assert all(r["role"] in ("target", "observed") for s in log["steps"] for r in s["runs"])


def test_fix_bisect_finds_the_fixing_commit(tmp_path):
    repo = tmp_path / "repo"
    c = make_repo(repo, ["bad"] * 5 + ["fixed"] * 5)
    res = Bisector(options(repo, tmp_path, good=c[-1], bad=c[0], mode="fix"), FakeRunner(), log=lambda s: None).run()
    assert res.commit == c[5]
    assert res.mode == "fix" and "fixed" in res.summary()
    no_bisect_left(repo, tmp_path / "work")


def test_fix_bisect_with_endpoints_the_wrong_way_round_is_a_one_line_error(tmp_path):
    repo = tmp_path / "repo"
    c = make_repo(repo, ["bad"] * 3 + ["fixed"] * 3)
    with pytest.raises(BisectError, match="--fix"):
        Bisector(options(repo, tmp_path, good=c[0], bad=c[-1], mode="fix"), FakeRunner()).run()
    with pytest.raises(BisectError, match="use --fix"):
        Bisector(options(repo, tmp_path, good=c[-1], bad=c[0]), FakeRunner()).run()


def test_build_failures_are_skipped(tmp_path):
    repo = tmp_path / "repo"
    c = make_repo(repo, ["good", "good", "nobuild", "good", "good", "bad", "nobuild", "bad", "bad"])
    res = Bisector(options(repo, tmp_path, c[0], c[-1]), FakeRunner(), log=lambda s: None).run()
    assert res.commit == c[5]
    skipped = [s for s in res.steps if s.verdict == "skip"]
    assert all(not s.build_ok and "error: oops" in s.build_detail for s in skipped)
    no_bisect_left(repo, tmp_path / "work")


def test_skips_next_to_the_answer_leave_candidates(tmp_path):
    repo = tmp_path / "repo"
    c = make_repo(repo, ["good", "good", "nobuild", "bad", "bad"])
    res = Bisector(options(repo, tmp_path, c[0], c[-1]), FakeRunner(), log=lambda s: None).run()
    assert res.commit == "" and set(res.candidates) == {c[2], c[3]}
    assert "candidates" in res.summary()
    no_bisect_left(repo, tmp_path / "work")


def test_unchanged_kernel_is_not_retested(tmp_path):
    repo = tmp_path / "repo"
    states = ["good", ("README", "a"), ("README", "b"), ("README", "c"), "bad", ("README", "d"), ("README", "e")]
    c = make_repo(repo, states)
    runner = FakeRunner()
    res = Bisector(options(repo, tmp_path, c[0], c[-1]), runner, log=lambda s: None).run()
    assert res.commit == c[4]
    reused = [s for s in res.steps if s.reused_from]
    assert reused, "README-only commits build the same kernel as an endpoint"
    for s in reused:
        assert s.runs == [] and s.commit not in {commit for commit, _ in runner.runs}
        assert s.digest == next(x.digest for x in res.steps if x.commit == s.reused_from)


def test_flaky_target_raises_the_runs_per_commit_and_lowers_confidence(tmp_path):
    repo = tmp_path / "repo"
    # reproduces on every third run only
    c = make_repo(repo, ["good"] * 4 + ["flaky:001"] * 4)
    runner = FakeRunner()
    res = Bisector(options(repo, tmp_path, c[0], c[-1], max_runs=8), runner, log=lambda s: None).run()
    assert (res.reproduced, res.endpoint_runs) == (1, 3)
    assert res.rate == pytest.approx(2 / 5)
    assert res.runs_per_step == 6  # ceil(log(0.05) / log(0.6))
    assert res.commit == c[4]
    clear = [s for s in res.steps if s.verdict == "good" and not s.endpoint and not s.reused_from]
    assert all(s.observed == 6 for s in clear)
    assert res.confidence == pytest.approx((1 - 0.6 ** 6) ** len(clear), abs=1e-4)
    assert res.confidence < 1.0 or not clear


def test_unrelated_crash_is_logged_and_not_counted(tmp_path):
    repo = tmp_path / "repo"
    c = make_repo(repo, ["good", "good", "other", "good", "bad", "bad"])
    res = Bisector(options(repo, tmp_path, c[0], c[-1]), FakeRunner(), log=lambda s: None).run()
    assert res.commit == c[4]
    other = [s for s in res.steps if s.commit == c[2]]
    assert other, "the bisect tests commit 2 (the midpoint after the first step)"
    for s in other:
        assert s.verdict == "skip"
        assert {r["role"] for r in s.runs} == {"masked"}
        assert s.runs[0]["outcome"]["titles"] == ["BUG: unable to handle page fault for address"]


def test_boot_failures_do_not_count(tmp_path):
    repo = tmp_path / "repo"
    c = make_repo(repo, ["good", "good", "infra", "bad", "bad"])
    res = Bisector(options(repo, tmp_path, c[0], c[-1]), FakeRunner(), log=lambda s: None).run()
    assert res.commit == "" and set(res.candidates) == {c[2], c[3]}


def test_good_end_with_the_target_is_refused(tmp_path):
    repo = tmp_path / "repo"
    c = make_repo(repo, ["bad", "bad", "bad"])
    with pytest.raises(BisectError, match="nothing the good end does not"):
        Bisector(options(repo, tmp_path, c[0], c[-1]), FakeRunner(), log=lambda s: None).run()
    no_bisect_left(repo, tmp_path / "work")


@pytest.mark.parametrize("when", [1, 2, 4])  # bad end, good end, a bisect step
@pytest.mark.parametrize("exc", [KeyboardInterrupt(), RuntimeError("runner crashed")], ids=["ctrl-c", "error"])
def test_interrupt_or_failure_leaves_no_bisect_state_and_no_worktree(tmp_path, when, exc):
    repo = tmp_path / "repo"
    c = make_repo(repo, ["good"] * 5 + ["bad"] * 5)
    head = git(repo, "rev-parse", "HEAD")
    with pytest.raises(type(exc)):
        Bisector(options(repo, tmp_path, c[0], c[-1]), FakeRunner(raise_on_build=when, exc=exc),
                 log=lambda s: None).run()
    no_bisect_left(repo, tmp_path / "work")
    assert git(repo, "rev-parse", "HEAD") == head
    assert git(repo, "status", "--porcelain") == ""


def test_a_stale_worktree_from_a_killed_run_is_replaced(tmp_path):
    repo = tmp_path / "repo"
    c = make_repo(repo, ["good"] * 3 + ["bad"] * 3)
    stale = tmp_path / "work" / "worktree"
    git(repo, "worktree", "add", "--detach", str(stale), c[1])
    git(stale, "bisect", "start", c[-1], c[0])
    res = Bisector(options(repo, tmp_path, c[0], c[-1]), FakeRunner(), log=lambda s: None).run()
    assert res.commit == c[3]
    no_bisect_left(repo, tmp_path / "work")


def test_not_a_git_tree_is_a_one_line_error(tmp_path):
    with pytest.raises(B.HarnessError, match="not in a git repository"):
        Bisector(options(tmp_path, tmp_path, "HEAD~1", "HEAD"), FakeRunner()).run()
    repo = tmp_path / "repo"
    make_repo(repo, ["good", "bad"])
    with pytest.raises(B.HarnessError, match="is not a commit"):
        Bisector(options(repo, tmp_path, "nope", "HEAD"), FakeRunner()).run()


# --------------------------------------------------------------------------- the outcome table

def test_same_outcome_compares_the_facet_the_table_names():
    warn = Signature("WARNING", ("WARNING in ext4_dirty_folio",))
    assert B.same_outcome(warn, Signature("CRASH", ("BUG: x", "WARNING in ext4_dirty_folio")))
    assert not B.same_outcome(warn, Signature("WARNING", ("WARNING in xfs_vm_writepages",)))
    eopnotsupp = Signature("PROTECTED", errno=95)
    assert B.same_outcome(eopnotsupp, Signature("PROTECTED", errno=95))
    assert not B.same_outcome(eopnotsupp, Signature("PROTECTED", errno=14))
    assert B.same_outcome(Signature("DATA-LOSS"), Signature("DATA-LOSS", ("anything",)))
    assert not B.same_outcome(Signature("CLEAN"), Signature(B.INFRA))
    assert set(B.SAME_OUTCOME.values()) <= set(B.FACETS)


def test_run_roles():
    assert B.run_role(TARGET, TARGET) == "target"
    assert B.run_role(TARGET, Signature("CLEAN")) == "observed"
    assert B.run_role(TARGET, Signature("CRASH", ("BUG: other",))) == "masked"
    assert B.run_role(TARGET, Signature(B.INFRA)) == "infra"


def test_choose_target_picks_the_most_frequent_outcome_absent_at_the_good_end():
    other = Signature("WARNING", ("WARNING in other",))
    target, k, n = B.choose_target([TARGET, other, TARGET, Signature(B.INFRA)], [Signature("CLEAN"), other])
    assert (target, k, n) == (TARGET, 2, 3)
    with pytest.raises(BisectError, match="bad end could not be tested"):
        B.choose_target([Signature(B.INFRA, detail="BootTimeout")], [Signature("CLEAN")])


@pytest.mark.parametrize("p,conf,want", [(1.0, 0.95, 1), (0.8, 0.95, 2), (0.4, 0.95, 6), (0.1, 0.95, 8),
                                         (0.5, 0.99, 7)])
def test_runs_for(p, conf, want):
    assert B.runs_for(p, conf, max_runs=8) == want


def test_bisect_command_is_registered(capsys, tmp_path):
    from harness.cli import parser as cli

    assert cli.COMMANDS["bisect"][0] == "harness.cli.bisect"
    parser = cli.build_parser()
    args = parser.parse_args(["bisect", "--tree", "/src", "--good", "v6.0", "--bad", "v6.1", "--workload", "vfio",
                              "--fix", "--runs", "5"])
    assert args.fix and args.runs == 5 and args.workload == "vfio" and args.test is None
    with pytest.raises(SystemExit):
        parser.parse_args(["bisect", "--tree", "/src", "--good", "a", "--bad", "b"])  # --test or --workload
    assert cli.main(["bisect", "--tree", str(tmp_path), "--good", "a", "--bad", "b", "--workload", "vfio",
                     "--out", str(tmp_path / "out")]) == 2
    assert "not in a git repository" in capsys.readouterr().err
