"""Bisect the commit that caused an outcome, or (``--fix``) the one that fixed it.

The driver runs ``git bisect`` in a separate worktree (harness.kbuild.worktree) and,
per commit, asks a step runner to build it and run the test N times:

* build failure → ``git bisect skip``; a run that could not test (boot or
  infrastructure failure) does not count;
* "reproduces" only when a run shows the *target*: the outcome seen at the bad
  end and never at the good end, compared by the facet ``SAME_OUTCOME`` names
  for its kind (same crash title, same oracle outcome kind, same errno);
* an unrelated crash is logged and counts neither way (it masked the test);
* N follows the reproduction rate measured at the endpoints, and the answer
  carries a confidence (the chance that no "clear" verdict missed a flaky
  reproduction);
* a commit whose built kernel is byte-identical to one already tested reuses
  that verdict.

The step runner is the seam: harness.kbuild.bisect_runner builds real kernels and
boots them; the unit tests use a fake one on a real git repository.
"""
from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional, Protocol

from harness.kbuild import worktree as wt_mod
from harness.errors import HarnessError
from harness.vm.host import Paths


class BisectError(HarnessError):
    pass


# --------------------------------------------------------------------------- outcomes

@dataclass(frozen=True)
class Signature:
    """What one test run showed, reduced to what a bisect compares."""

    kind: str  # an Outcome kind (CRASH, WARNING, DATA-LOSS, PIN-LEAK, PROTECTED, CLEAN), REPORTED, FAILED, PASSED, INFRA
    titles: tuple[str, ...] = ()
    errno: int = 0
    detail: str = ""

    def __str__(self) -> str:
        extra = f"({self.titles[0]})" if self.titles else (f"(errno {self.errno})" if self.errno else "")
        return self.kind + extra

    def to_dict(self) -> dict:
        return {"kind": self.kind, "titles": list(self.titles), "errno": self.errno, "detail": self.detail}


INFRA = "INFRA"

# "The same outcome as at the bad end": per target kind, the facet that must match.
SAME_OUTCOME: dict[str, str] = {
    "CRASH": "title",  # the same crash title (any kind: a WARNING target may come with another crash)
    "WARNING": "title",
    "REPORTED": "title",  # a pytest test failed by the post-test console check
    "DATA-LOSS": "kind",
    "PIN-LEAK": "kind",
    "PROTECTED": "errno",  # refused with the same errno
    "CLEAN": "kind",
    "FAILED": "kind",  # a pytest test failed without a kernel report
    "PASSED": "kind",
}

FACETS: dict[str, Callable[[Signature, Signature], bool]] = {
    "title": lambda target, run: bool(target.titles) and target.titles[0] in run.titles,
    "kind": lambda target, run: run.kind == target.kind,
    "errno": lambda target, run: run.kind == target.kind and run.errno == target.errno,
}

# A run that is not the target counts, by its kind, as: "infra" (could not test),
# "masked" (an unrelated crash ended the test: logged, counts neither way) or,
# for every kind not listed, "observed" (the test ran and the target did not show).
OTHER_ROLE: dict[str, str] = {INFRA: "infra", "CRASH": "masked"}


def same_outcome(target: Signature, run: Signature) -> bool:
    if run.kind == INFRA:
        return False
    return FACETS[SAME_OUTCOME.get(target.kind, "kind")](target, run)


def run_role(target: Signature, run: Signature) -> str:
    if same_outcome(target, run):
        return "target"
    return OTHER_ROLE.get(run.kind, "observed")


def choose_target(bad_runs: list[Signature], good_runs: list[Signature]) -> tuple[Signature, int, int]:
    """The outcome to bisect on: the most frequent one at the bad end that never shows at the
    good end. Returns (target, runs showing it, valid runs at the bad end)."""
    bad = [r for r in bad_runs if r.kind != INFRA]
    good = [r for r in good_runs if r.kind != INFRA]
    if not bad:
        why = bad_runs[0].detail if bad_runs else "no runs"
        raise BisectError(f"the bad end could not be tested: every run failed to boot or run ({why})")
    if not good:
        why = good_runs[0].detail if good_runs else "no runs"
        raise BisectError(f"the good end could not be tested: every run failed to boot or run ({why})")
    best: Optional[tuple[int, Signature]] = None
    for cand in bad:
        if any(same_outcome(cand, g) for g in good):
            continue
        k = sum(same_outcome(cand, r) for r in bad)
        if best is None or k > best[0]:
            best = (k, cand)
    if best is None:
        raise BisectError(f"the bad end shows nothing the good end does not (bad: {', '.join(map(str, bad))}; "
                          f"good: {', '.join(map(str, good))}): check --good/--bad and the test")
    return best[1], best[0], len(bad)


def reproduction_rate(k: int, n: int) -> float:
    """Estimated chance that one run reproduces: Laplace's rule, (k+1)/(n+2), so that a few
    lucky runs at the endpoints do not make every later step a single run."""
    return (k + 1) / (n + 2)


def runs_for(p: float, confidence: float, max_runs: int) -> int:
    """Runs per commit so that a commit that has the target shows it with ``confidence``."""
    if p >= 1.0:
        return 1
    need = math.ceil(math.log(1.0 - confidence) / math.log(1.0 - p))
    return max(1, min(max_runs, need))


# --------------------------------------------------------------------------- modes

@dataclass(frozen=True)
class Mode:
    name: str
    term_old: str
    term_new: str
    reproduces: str  # the term of a commit where the target reproduces
    clear: str  # ... and of one where it does not

    @property
    def terms(self) -> tuple[str, str]:
        return self.term_old, self.term_new


MODES: dict[str, Mode] = {
    # cause: old = --good, new = --bad; the first "bad" commit introduced the outcome
    "cause": Mode("cause", "good", "bad", reproduces="bad", clear="good"),
    # fix: old = --bad (still broken), new = --good; the first "fixed" commit fixed it
    "fix": Mode("fix", "broken", "fixed", reproduces="broken", clear="fixed"),
}


# --------------------------------------------------------------------------- steps

@dataclass
class Build:
    ok: bool
    digest: str = ""  # of the bootable binaries: equal digests are the same kernel
    seconds: float = 0.0
    detail: str = ""
    handle: object = None  # whatever the runner's run() needs (a Kernel)


class StepRunner(Protocol):
    def build(self, src: Path, commit: str) -> Build: ...

    def run(self, build: Build, attempt: int) -> Signature: ...


@dataclass
class StepRecord:
    commit: str
    subject: str
    label: str  # "bad end", "good end", "step 3"
    build_ok: bool = False
    build_seconds: float = 0.0
    build_detail: str = ""
    digest: str = ""
    reused_from: str = ""
    runs: list = field(default_factory=list)  # [{"outcome": ..., "role": ..., "seconds": ...}]
    verdict: str = ""  # the git term marked, or "skip"
    endpoint: bool = False
    observed: int = 0  # runs where the test ran and the target did not show

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class BisectResult:
    mode: str
    commit: str  # the first bad (cause) / first fixed (fix) commit; "" when skips leave several
    subject: str
    candidates: list[str]
    target: Signature
    reproduced: int
    endpoint_runs: int
    rate: float
    runs_per_step: int
    confidence: float
    steps: list[StepRecord]
    log: Optional[Path] = None
    seconds: float = 0.0

    def summary(self) -> str:
        what = "caused" if self.mode == "cause" else "fixed"
        if self.commit:
            head = f"{self.commit[:12]} ({self.subject}) {what} {self.target}"
        else:
            head = (f"skipped commits leave {len(self.candidates)} candidates that {what} {self.target}: "
                    + ", ".join(c[:12] for c in self.candidates))
        return (f"{head}; confidence {self.confidence:.2f} (reproduced {self.reproduced}/{self.endpoint_runs} at the "
                f"bad end, {self.runs_per_step} run(s) per commit, {len(self.steps)} commits tested)")


@dataclass(frozen=True)
class BisectOptions:
    tree: Path
    good: str
    bad: str
    mode: str = "cause"
    endpoint_runs: int = 3
    confidence: float = 0.95
    max_runs: int = 8
    workdir: Optional[Path] = None  # where the worktree goes (stable per tree: builds stay incremental)
    log: Optional[Path] = None


def default_workdir(repo: Path) -> Path:
    """One stable place per repository (in the cache): the O= build there stays incremental."""
    key = hashlib.sha256(str(Path(repo).resolve()).encode()).hexdigest()[:10]
    return Paths.default().cache / "bisect" / f"{Path(repo).name}-{key}"


class Bisector:
    """The state machine: endpoints → target → git bisect steps → result. Always cleans up."""

    def __init__(self, options: BisectOptions, runner: StepRunner, log: Callable[[str], None] = print):
        if options.mode not in MODES:
            raise BisectError(f"unknown bisect mode {options.mode!r}: {', '.join(MODES)}")
        self.o = options
        self.mode = MODES[options.mode]
        self.runner = runner
        self.say = log
        self.steps: list[StepRecord] = []
        self.by_digest: dict[str, StepRecord] = {}
        self.target: Optional[Signature] = None
        self.rate = 1.0
        self.n = 1
        self.reproduced = (0, 0)

    # ---- setup

    def _endpoints(self, repo: Path) -> tuple[str, str]:
        good = wt_mod.resolve_commit(repo, self.o.good)
        bad = wt_mod.resolve_commit(repo, self.o.bad)
        if good == bad:
            raise BisectError("--good and --bad are the same commit")
        old, new = (good, bad) if self.mode.name == "cause" else (bad, good)
        if not wt_mod.is_ancestor(repo, old, new):
            if self.mode.name == "cause":
                raise BisectError(f"--good {self.o.good} is not an ancestor of --bad {self.o.bad}: to find the "
                                  "commit that fixed something, use --fix (then --bad is the older, broken one)")
            raise BisectError(f"with --fix, --bad {self.o.bad} (still broken) must be an ancestor of --good "
                              f"{self.o.good} (fixed)")
        return good, bad

    def run(self) -> BisectResult:
        t0 = time.monotonic()
        top = wt_mod.toplevel(self.o.tree)
        rel = Path(self.o.tree).expanduser().resolve().relative_to(top)
        good, bad = self._endpoints(top)
        old, new = (good, bad) if self.mode.name == "cause" else (bad, good)
        count = int(wt_mod.git(top, "rev-list", "--count", f"{old}..{new}").stdout.strip() or 0)
        workdir = self.o.workdir or default_workdir(top)
        wt = wt_mod.BisectWorktree(top, workdir / "worktree", bad)
        self.say(f"pinharness: bisect ({self.mode.name}): {count} commits between {old[:12]} and {new[:12]}, "
                 f"worktree {wt.path}")
        with wt:
            src = wt.path / rel
            bad_rec, bad_runs = self._endpoint(wt, src, bad, "bad end")
            good_rec, good_runs = self._endpoint(wt, src, good, "good end")
            self.target, k, valid = choose_target(bad_runs, good_runs)
            self.reproduced = (k, valid)
            self.rate = reproduction_rate(k, valid)
            self.n = runs_for(self.rate, self.o.confidence, self.o.max_runs)
            for rec, sigs, term in ((bad_rec, bad_runs, self.mode.reproduces), (good_rec, good_runs, self.mode.clear)):
                for r, sig in zip(rec.runs, sigs):
                    r["role"] = run_role(self.target, sig)
                rec.verdict = term
                rec.observed = sum(r["role"] == "observed" for r in rec.runs)
            self.say(f"pinharness: bisect: target {self.target}: {k}/{valid} runs at the bad end "
                     f"(rate ~{self.rate:.2f}), {self.n} run(s) per commit")
            self._write_log(None)
            out = wt_mod.bisect_start(wt, new, old, self.mode.terms)
            done = wt_mod.bisect_finished(out, self.mode.term_new)
            step = 0
            while done is None:
                step += 1
                if step > count + 2:
                    raise BisectError(f"git bisect did not finish after {step - 1} steps (of {count} commits)")
                commit = wt.head()
                rec = self._step(wt, src, commit, f"step {step}")
                out = wt_mod.bisect_mark(wt, rec.verdict, self.mode.term_new)
                done = wt_mod.bisect_finished(out, self.mode.term_new)
            first, candidates = done
        result = BisectResult(
            self.mode.name, first, wt_mod.subject(top, first) if first else "", candidates, self.target,
            self.reproduced[0], self.reproduced[1], self.rate, self.n, self._confidence(), self.steps,
            self.o.log, round(time.monotonic() - t0, 1))
        self._write_log(result)
        self.say(f"pinharness: bisect: {result.summary()}")
        return result

    # ---- one commit

    def _build(self, wt: wt_mod.BisectWorktree, src: Path, commit: str, label: str) -> tuple[StepRecord, Build]:
        wt.checkout(commit)
        rec = StepRecord(commit, wt_mod.subject(wt.path, commit), label)
        self.say(f"pinharness: bisect: {label}: {commit[:12]} {rec.subject}")
        b = self.runner.build(src, commit)
        rec.build_ok, rec.build_seconds, rec.build_detail, rec.digest = b.ok, round(b.seconds, 1), b.detail, b.digest
        return rec, b

    def _run_once(self, b: Build, attempt: int) -> tuple[Signature, float]:
        t0 = time.monotonic()
        try:
            sig = self.runner.run(b, attempt)
        except HarnessError as exc:  # boot failure, VM error: the commit could not be tested
            sig = Signature(INFRA, detail=f"{type(exc).__name__}: {exc}")
        return sig, round(time.monotonic() - t0, 1)

    def _endpoint(self, wt: wt_mod.BisectWorktree, src: Path, commit: str,
                  label: str) -> tuple[StepRecord, list[Signature]]:
        rec, b = self._build(wt, src, commit, label)
        rec.endpoint = True
        if not b.ok:
            raise BisectError(f"the {label} {commit[:12]} does not build: {b.detail}")
        sigs = []
        for i in range(self.o.endpoint_runs):
            sig, secs = self._run_once(b, i)
            sigs.append(sig)
            rec.runs.append({"outcome": sig.to_dict(), "role": "", "seconds": secs})
            self.say(f"pinharness: bisect: {label} run {i + 1}/{self.o.endpoint_runs}: {sig}")
        self.steps.append(rec)
        self.by_digest.setdefault(b.digest, rec)
        return rec, sigs

    def _step(self, wt: wt_mod.BisectWorktree, src: Path, commit: str, label: str) -> StepRecord:
        rec, b = self._build(wt, src, commit, label)
        self.steps.append(rec)
        if not b.ok:
            rec.verdict = "skip"
            self.say(f"pinharness: bisect: {label}: build failed, skipping ({b.detail})")
            self._write_log(None)
            return rec
        prev = self.by_digest.get(b.digest)
        if prev is not None and prev.verdict != "skip":
            rec.reused_from, rec.verdict, rec.observed = prev.commit, prev.verdict, prev.observed
            self.say(f"pinharness: bisect: {label}: same kernel as {prev.commit[:12]}: {rec.verdict} (not retested)")
            self._write_log(None)
            return rec
        for i in range(2 * self.n):  # room for runs that could not test
            sig, secs = self._run_once(b, i)
            role = run_role(self.target, sig)
            rec.runs.append({"outcome": sig.to_dict(), "role": role, "seconds": secs})
            self.say(f"pinharness: bisect: {label} run {i + 1}: {sig} ({role})")
            if role == "target":
                rec.verdict = self.mode.reproduces
                break
            rec.observed += role == "observed"
            if rec.observed >= self.n:
                rec.verdict = self.mode.clear
                break
        if not rec.verdict:
            rec.verdict = self.mode.clear if rec.observed else "skip"
        self.by_digest.setdefault(b.digest, rec)
        self.say(f"pinharness: bisect: {label}: {rec.verdict}")
        self._write_log(None)
        return rec

    # ---- results

    def _confidence(self) -> float:
        """P(no clear verdict of a tested commit missed the target) under the estimated rate."""
        conf = 1.0
        for rec in self.steps:
            if rec.verdict == self.mode.clear and rec.observed and not rec.endpoint and not rec.reused_from:
                conf *= 1.0 - (1.0 - self.rate) ** rec.observed
        return round(conf, 4)

    def _write_log(self, result: Optional[BisectResult]) -> None:
        if self.o.log is None:
            return
        doc = {"mode": self.mode.name, "tree": str(self.o.tree), "good": self.o.good, "bad": self.o.bad,
               "target": self.target.to_dict() if self.target else None,
               "reproduced": {"runs": self.reproduced[0], "of": self.reproduced[1], "rate": round(self.rate, 3)},
               "runs_per_step": self.n, "steps": [s.to_dict() for s in self.steps]}
        if result is not None:
            doc["result"] = {"commit": result.commit, "subject": result.subject, "candidates": result.candidates,
                             "confidence": result.confidence, "seconds": result.seconds,
                             "summary": result.summary()}
        self.o.log.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.o.log.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=1))
        tmp.replace(self.o.log)
