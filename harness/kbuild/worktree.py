"""A separate git worktree for a bisect: the user's checkout, index and HEAD are never touched.

``BisectWorktree`` is a context manager: on the way out, whatever happened (an
exception, Ctrl-C), it runs ``git bisect reset``, ``git worktree remove
--force`` and ``git worktree prune``, so no bisect state and no worktree stay.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from harness.errors import HarnessError

GIT_TIMEOUT = 600.0  # a checkout of a kernel tree on a slow disk


class GitError(HarnessError):
    pass


def git(repo: Path, *args: str, check: bool = True, timeout: float = GIT_TIMEOUT) -> subprocess.CompletedProcess:
    try:
        proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise GitError(f"`git {' '.join(args)}` timed out after {timeout:.0f}s in {repo}")
    if check and proc.returncode != 0:
        msg = (proc.stderr.strip() or proc.stdout.strip() or f"exit {proc.returncode}").splitlines()[-1]
        raise GitError(f"`git {' '.join(args)}` failed in {repo}: {msg}")
    return proc


def toplevel(path: Path) -> Path:
    """The repository root holding ``path``, or a one-line error."""
    path = Path(path).expanduser().resolve()
    if not path.is_dir():
        raise GitError(f"--tree {path} is not a directory")
    proc = git(path, "rev-parse", "--show-toplevel", check=False)
    if proc.returncode != 0:
        raise GitError(f"{path} is not in a git repository: bisect needs the tree's history (git clone it)")
    return Path(proc.stdout.strip()).resolve()


def resolve_commit(repo: Path, rev: str) -> str:
    proc = git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        raise GitError(f"{rev!r} is not a commit in {repo}")
    return proc.stdout.strip()


def is_ancestor(repo: Path, a: str, b: str) -> bool:
    return git(repo, "merge-base", "--is-ancestor", a, b, check=False).returncode == 0


def subject(repo: Path, commit: str) -> str:
    return git(repo, "log", "-1", "--format=%s", commit).stdout.strip()


@dataclass
class BisectWorktree:
    """A detached worktree of ``repo`` at ``path`` in which `git bisect` runs."""

    repo: Path
    path: Path
    start: str  # commit the worktree is created at

    def __enter__(self) -> "BisectWorktree":
        self.discard()  # a worktree left by a killed run (SIGKILL skips every finally)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        git(self.repo, "worktree", "add", "--detach", "--force", str(self.path), self.start)
        return self

    def __exit__(self, *exc) -> None:
        self.discard()

    def git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return git(self.path, *args, check=check)

    def checkout(self, commit: str) -> None:
        self.git("checkout", "--quiet", "--detach", "--force", commit)

    def head(self) -> str:
        return self.git("rev-parse", "HEAD").stdout.strip()

    def discard(self) -> None:
        """Reset any bisect, remove the worktree and prune; never raises."""
        if (self.path / ".git").exists():
            git(self.path, "bisect", "reset", check=False)
        git(self.repo, "worktree", "remove", "--force", "--force", str(self.path), check=False)
        if self.path.exists():
            shutil.rmtree(self.path, ignore_errors=True)
        git(self.repo, "worktree", "prune", check=False)


def bisect_start(wt: BisectWorktree, new: str, old: str, terms: Sequence[str]) -> str:
    """`git bisect start` with (old, new) terms; returns git's message."""
    term_old, term_new = terms
    proc = wt.git("bisect", "start", f"--term-old={term_old}", f"--term-new={term_new}", new, old)
    return proc.stdout


def bisect_mark(wt: BisectWorktree, term: str, term_new: str) -> str:
    """`git bisect <term>` (a term or 'skip'); returns git's output."""
    proc = wt.git("bisect", term, check=False)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0 and bisect_finished(out, term_new) is None:
        msg = (out.strip() or f"exit {proc.returncode}").splitlines()[-1]
        raise GitError(f"`git bisect {term}` failed: {msg}")
    return out


def bisect_finished(output: str, term_new: str) -> Optional[tuple[str, list[str]]]:
    """(first commit or '', candidate commits) once git has an answer, None while bisecting."""
    m = re.search(rf"^([0-9a-f]{{40}}) is the first {re.escape(term_new)} commit", output, re.M)
    if m:
        return m.group(1), [m.group(1)]
    if "only 'skip'ped commits left to test" in output:
        cands = re.findall(r"^([0-9a-f]{40})$", output, re.M)
        return "", cands
    return None
