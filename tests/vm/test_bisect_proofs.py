"""The bisect proofs on real kernel history (slow: hours on 2 cores; not in the CI tier).

A git repository is made from Debian's linux-source-6.1 (`apt-get install
linux-source-6.1`) with two branches off the imported tree:

  fix    9 commits; the 5th backports the v6.5 change that refuses FOLL_LONGTERM
         writable pins of dirty-tracked file mappings (tests/data/0001-mm-gup-
         disallow-...patch: writable_file_mapping_allowed() in check_vma_flags())
  cause  8 commits; the 4th makes every long-term pin of a shared file mapping
         WARN (tests/data/0001-mm-gup-warn-...patch)

The other commits are unrelated: documentation (builds the same kernel, so the
bisect must reuse a verdict), a comment at the end of a built file (same kernel
too) and strings added to built files (a different kernel every time).

`harness bisect --fix` with the vfio workload (MGLRU off, bh-fill, reclaim) must name the backport, and the
cause bisect must name the WARN commit. Runtime, per-step build times and the
named commits are written to artifacts/bisect-proof/<name>.json for the note.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.vm.host import Paths

pytestmark = [pytest.mark.slow, pytest.mark.vm]

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA = REPO_ROOT / "tests" / "data"
TARBALL = Path("/usr/src/linux-source-6.1.tar.xz")
FIX_PATCH = DATA / "0001-mm-gup-disallow-FOLL_LONGTERM-GUP-nonfast-writing-to-file-backed-mappings-6.1.patch"
WARN_PATCH = DATA / "0001-mm-gup-warn-on-long-term-pins-of-shared-file-mappings-test-regression-6.1.patch"
GIT_TIMEOUT = 1800

# (kind, path, text or patch, subject). kinds: "append" text to a file, "patch" a patch file.
NOTE = 'static const char pinharness_note_{n}[] __used = "pinharness bisect proof {n}";\n'
FIX_SERIES = [
    ("append", "Documentation/admin-guide/README.rst", "\n.. pinharness: an unrelated documentation change\n",
     "docs: admin-guide: a note (unrelated, same kernel)"),
    ("append", "mm/util.c", NOTE.format(n=1), "mm/util: a string (unrelated, another kernel)"),
    ("append", "mm/filemap.c", "/* pinharness: a comment at the end of the file */\n",
     "mm/filemap: a trailing comment (unrelated, same kernel)"),
    ("append", "lib/string.c", NOTE.format(n=2), "lib/string: a string (unrelated, another kernel)"),
    ("patch", "mm/gup.c", FIX_PATCH, "mm/gup: disallow FOLL_LONGTERM GUP-nonfast writing to file-backed mappings"),
    ("append", "fs/ext4/super.c", NOTE.format(n=3), "ext4: a string (unrelated, another kernel)"),
    ("append", "Documentation/mm/index.rst", "\n.. pinharness: another documentation change\n",
     "docs: mm: a note (unrelated, same kernel)"),
    ("append", "kernel/sys.c", NOTE.format(n=4), "kernel/sys: a string (unrelated, another kernel)"),
    ("append", "drivers/virtio/virtio.c", NOTE.format(n=5), "virtio: a string (unrelated, another kernel)"),
]
CAUSE_SERIES = [
    ("append", "mm/util.c", NOTE.format(n=11), "mm/util: a string (unrelated)"),
    ("append", "Documentation/admin-guide/README.rst", "\n.. pinharness: cause branch docs\n",
     "docs: a note (unrelated, same kernel)"),
    ("append", "lib/string.c", NOTE.format(n=12), "lib/string: a string (unrelated)"),
    ("patch", "mm/gup.c", WARN_PATCH, "mm/gup: warn on long-term pins of shared file mappings (test regression)"),
    ("append", "fs/xfs/xfs_super.c", NOTE.format(n=13), "xfs: a string (unrelated)"),
    ("append", "kernel/sys.c", NOTE.format(n=14), "kernel/sys: a string (unrelated)"),
    ("append", "mm/filemap.c", "/* pinharness: cause branch comment */\n", "mm/filemap: a comment (unrelated)"),
    ("append", "drivers/virtio/virtio.c", NOTE.format(n=15), "virtio: a string (unrelated)"),
]
BRANCHES = {"fix": FIX_SERIES, "cause": CAUSE_SERIES}


def git(repo: Path, *args: str, timeout: float = GIT_TIMEOUT) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True,
                          timeout=timeout).stdout.strip()


def _recipe_key() -> str:
    h = hashlib.sha256(f"{TARBALL.stat().st_size}:{TARBALL.stat().st_mtime_ns}".encode())
    h.update(repr(BRANCHES).encode() + FIX_PATCH.read_bytes() + WARN_PATCH.read_bytes())
    return h.hexdigest()[:12]


def _commit_series(repo: Path, series) -> list[str]:
    commits = []
    for kind, path, what, subject in series:
        if kind == "patch":
            git(repo, "apply", "--index", str(what))
        else:
            with open(repo / path, "a") as f:
                f.write(what)
            git(repo, "add", "--force", path)  # see the import: Debian ignores the top level
        git(repo, "commit", "-q", "-m", subject)
        commits.append(git(repo, "rev-parse", "HEAD"))
    return commits


@pytest.fixture(scope="module")
def linux_history() -> dict:
    """The repository (cached across runs, keyed by the tarball and the series) and its commits."""
    if not TARBALL.exists():
        pytest.skip(f"{TARBALL} missing: apt-get install linux-source-6.1")
    root = Paths.default().sub("bisect-proof")
    key = _recipe_key()
    repo = root / f"linux-6.1-{key}"
    meta_path = repo / ".git" / "pinharness-history.json"
    if meta_path.exists():
        return {**json.loads(meta_path.read_text()), "repo": repo}
    shutil.rmtree(repo, ignore_errors=True)
    repo.mkdir(parents=True)
    subprocess.run(["tar", "-xaf", str(TARBALL), "-C", str(repo), "--strip-components=1"], check=True,
                   timeout=GIT_TIMEOUT)
    git(repo, "-c", "init.defaultBranch=base", "init", "-q")
    git(repo, "config", "user.email", "pinharness@localhost")
    git(repo, "config", "user.name", "pinharness")
    git(repo, "add", "-A", "--force")  # Debian's tree ignores its own top level ("/*" in .gitignore)
    git(repo, "commit", "-q", "-m", "linux-source-6.1 (Debian) imported")
    base = git(repo, "rev-parse", "HEAD")
    meta = {"base": base}
    for name, series in BRANCHES.items():
        git(repo, "checkout", "-q", "-b", name, base)
        meta[name] = _commit_series(repo, series)
    git(repo, "checkout", "-q", "base")
    meta_path.write_text(json.dumps(meta))
    return {**meta, "repo": repo}


def run_bisect(repo: Path, out: Path, *args: str, timeout: float = 8 * 3600) -> dict:
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "harness", "bisect", "--tree", str(repo), "--out", str(out),
                           "--jobs", "2", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)
    (out / "bisect-stderr.log").write_text(proc.stderr)
    log = json.loads((out / "bisect.json").read_text())
    log["wall_seconds"] = round(time.monotonic() - t0, 1)
    log["exit"] = proc.returncode
    return log


def record(name: str, log: dict, history: dict, want: str) -> None:
    """What the note needs: runtime, per-step build times, named vs expected commit."""
    art = REPO_ROOT / "artifacts" / "bisect-proof"
    art.mkdir(parents=True, exist_ok=True)
    steps = [{"commit": s["commit"][:12], "subject": s["subject"], "label": s["label"],
              "build_seconds": s["build_seconds"], "verdict": s["verdict"], "reused_from": s["reused_from"][:12],
              "runs": [r["outcome"]["kind"] for r in s["runs"]]} for s in log["steps"]]
    (art / f"{name}.json").write_text(json.dumps(
        {"wall_seconds": log["wall_seconds"], "named": log.get("result", {}).get("commit", ""), "expected": want,
         "summary": log.get("result", {}).get("summary", ""), "steps": steps}, indent=1))


def assert_clean(repo: Path) -> None:
    worktrees = [ln for ln in git(repo, "worktree", "list", "--porcelain").splitlines() if ln.startswith("worktree ")]
    assert worktrees == [f"worktree {repo}"]
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD") == "base"
    assert git(repo, "status", "--porcelain", "--untracked-files=no") == ""


def test_fix_bisect_names_the_backport(linux_history, tmp_path):
    repo, fix = linux_history["repo"], linux_history["fix"]
    want = fix[4]
    # MGLRU off: the base+pins build enables it by default, and with it on the allowed pin stays CLEAN
    # (harness/pins/data/oracle.tsv); off, the broken end shows the WARNING and the lost pages.
    log = run_bisect(repo, tmp_path, "--good", "fix", "--bad", "base", "--fix", "--runs", "2",
                     "--workload", "vfio:ext4:mglru-off+bh-fill+reclaim")
    record("fix-vfio", log, linux_history, want)
    assert log["exit"] == 0, (tmp_path / "bisect-stderr.log").read_text()[-3000:]
    assert log["result"]["commit"] == want, log["result"]["summary"]
    assert log["target"]["kind"] != "PROTECTED"  # the broken end: the pin was allowed
    fixed_end = next(s for s in log["steps"] if s["label"] == "good end")
    assert {r["outcome"]["kind"] for r in fixed_end["runs"]} == {"PROTECTED"}
    assert any(s["reused_from"] for s in log["steps"]) or len(log["steps"]) <= 5
    assert_clean(repo)


def test_cause_bisect_names_the_warning_commit(linux_history, tmp_path):
    repo, cause = linux_history["repo"], linux_history["cause"]
    want = cause[3]
    log = run_bisect(repo, tmp_path, "--good", "base", "--bad", "cause", "--workload", "vfio:ext4:none")
    record("cause-vfio", log, linux_history, want)
    assert log["exit"] == 0, (tmp_path / "bisect-stderr.log").read_text()[-3000:]
    assert log["result"]["commit"] == want, log["result"]["summary"]
    assert log["target"]["titles"][0].startswith("WARNING in"), log["target"]  # the injected WARN_ON_ONCE
    assert_clean(repo)
