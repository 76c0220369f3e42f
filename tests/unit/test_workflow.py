"""The nightly workflow and its script: valid YAML of the right shape, pinned actions,
the GitHub workflow JSON schema when check-jsonschema is installed, and the script's plan."""
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "nightly.yml"
SCRIPT = ROOT / "ci" / "nightly.sh"
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}$")


@pytest.fixture(scope="module")
def wf():
    yaml = pytest.importorskip("yaml", reason="PyYAML not installed (pip install -e .[test])")
    doc = yaml.safe_load(WORKFLOW.read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as true
    return doc


def test_text_without_a_yaml_parser():
    """What can be checked on the raw text, so CI checks it even where PyYAML is absent."""
    text = WORKFLOW.read_text()
    assert re.search(r"^on:\n  schedule:\n    - cron: \"[^\"]+\"\n  workflow_dispatch:", text, re.M)
    uses = re.findall(r"^\s+(?:- )?uses: (\S+)", text, re.M)
    assert uses and all(PINNED.match(u) for u in uses)
    jobs = re.findall(r"^  (\w+):\n    (?:needs|runs-on)", text, re.M)
    assert len(jobs) == 3 and text.count("timeout-minutes:") == len(jobs)
    assert set(re.findall(r"ci/nightly\.sh (\w+)", text)) == {"plan", "kvm", "shard", "previous", "report"}
    assert "\t" not in text


def _steps(wf):
    return [(name, step) for name, job in wf["jobs"].items() for step in job.get("steps", [])]


def test_triggers(wf):
    assert set(wf["on"]) == {"schedule", "workflow_dispatch"}
    (cron,) = [s["cron"] for s in wf["on"]["schedule"]]
    assert len(cron.split()) == 5
    assert {"kernels", "fses", "shards"} <= set(wf["on"]["workflow_dispatch"]["inputs"])


def test_jobs_have_timeouts_and_the_report_runs_after_failed_shards(wf):
    jobs = wf["jobs"]
    assert set(jobs) == {"plan", "shard", "report"}
    assert all(isinstance(job["timeout-minutes"], int) and job["timeout-minutes"] > 0 for job in jobs.values())
    assert jobs["shard"]["needs"] == "plan" and jobs["shard"]["strategy"]["fail-fast"] is False
    assert "fromJSON(needs.plan.outputs.matrix)" in jobs["shard"]["strategy"]["matrix"]
    assert set(jobs["report"]["needs"]) == {"plan", "shard"} and "always()" in jobs["report"]["if"]


def test_actions_are_pinned_to_commits(wf):
    uses = [step["uses"] for _, step in _steps(wf) if "uses" in step]
    assert uses and all(PINNED.match(u) for u in uses), [u for u in uses if not PINNED.match(u)]
    tagged = re.findall(r"uses: (\S+) # (v\d+\.\d+\.\d+)", WORKFLOW.read_text())
    assert len(tagged) == len(uses)  # each pin says which release it is


def test_steps_call_the_script_and_keep_artifacts(wf):
    runs = [step["run"] for _, step in _steps(wf) if "run" in step]
    modes = {m for r in runs for m in re.findall(r"ci/nightly\.sh (\w+)", r)}
    assert modes == {"plan", "kvm", "shard", "previous", "report"}
    assert SCRIPT.is_file() and SCRIPT.stat().st_mode & 0o111
    cache = [s for _, s in _steps(wf) if s.get("uses", "").startswith("actions/cache@")]
    assert len(cache) == 1 and cache[0]["with"]["path"] == "~/.cache/pinharness"
    assert "hashFiles('guest-images/**')" in cache[0]["with"]["key"] and "matrix.kernel" in cache[0]["with"]["key"]
    uploads = [s for _, s in _steps(wf) if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert len(uploads) == 3 and all(s.get("if") == "always()" for s in uploads)
    assert {"nightly-results-json", "nightly-report"} <= {s["with"]["name"] for s in uploads}
    assert "nightly-results-json" in SCRIPT.read_text()  # what `previous` downloads is what the report uploads


def test_github_workflow_schema(wf):
    pytest.importorskip("check_jsonschema", reason="check-jsonschema not installed (its vendored schema is used)")
    jsonschema = pytest.importorskip("jsonschema")
    from importlib.resources import files

    base = files("check_jsonschema") / "builtin_schemas"
    for name in ("vendor/github-workflows.json", "custom/github-workflows-require-timeout.json"):
        schema = json.loads((base / name).read_text())
        errors = list(jsonschema.validators.validator_for(schema)(schema).iter_errors(wf))
        assert errors == [], [e.message for e in errors]


def test_script_syntax_and_plan():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, timeout=30).returncode == 0
    env = {"PATH": "/usr/bin:/bin", "NIGHTLY_KERNELS": "debian:6.1,tree:/src/linux", "NIGHTLY_FSES": "ext4,xfs",
           "NIGHTLY_SHARDS": "2"}
    out = subprocess.run([str(SCRIPT), "plan"], capture_output=True, text=True, timeout=30, env=env, check=True)
    include = json.loads(out.stdout)["include"]
    assert len(include) == 2 * 2 * 2 and len({i["name"] for i in include}) == 8
    assert include[0] == {"kernel": "debian:6.1", "fs": "ext4", "shard": "1/2", "name": "debian-6.1-ext4-1of2"}
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", i["name"]) for i in include)
    bad = subprocess.run([str(SCRIPT), "bogus"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "usage" in bad.stderr


# every shell script of the repository -> the shellcheck checks it opts out of (each with its reason)
SHELL_SCRIPTS: dict[str, tuple[str, ...]] = {
    "ph": (),
    ".ci/run": (),
    "ci/nightly.sh": (),
    "guest-images/bookworm/customize.sh": (),
    "guest-images/bookworm/init": (),
    "harness/vm/initramfs_init.sh": (),
}
NOT_SOURCES = {".git", ".venv", "__pycache__", ".pytest_cache", ".tox", "results", "artifacts"}


def _shell_scripts():
    for top, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in NOT_SOURCES and not d.endswith(".egg-info")]
        for name in files:
            path = Path(top) / name
            try:
                with path.open("rb") as f:
                    first = f.readline(80)
            except OSError:
                continue
            if re.match(rb"#!\s*(/usr/bin/env\s+|\S*busybox\s+)?\S*\b(ba|da)?sh\b", first):
                yield path.relative_to(ROOT).as_posix()


def test_every_shell_script_is_checked():
    assert sorted(_shell_scripts()) == sorted(SHELL_SCRIPTS)


@pytest.mark.skipif(not shutil.which("shellcheck"), reason="shellcheck not installed: apt-get install shellcheck "
                                                           "(.ci/run does)")
@pytest.mark.parametrize("script", sorted(SHELL_SCRIPTS))
def test_shellcheck(script):
    excluded = [f"--exclude={','.join(SHELL_SCRIPTS[script])}"] if SHELL_SCRIPTS[script] else []
    proc = subprocess.run(["shellcheck", *excluded, str(ROOT / script)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout


def test_script_report_merges_renders_and_compares(tmp_path):
    import sys

    from results_samples import cell_results, sample_run, with_changes

    out = tmp_path / "nightly"
    cells = cell_results(tmp_path / "old")
    sample_run(out / "previous", cells)
    changed = {"debian-6.12-odirect-ext4-reclaim": dict(release="6.12.10-amd64", pin_errno=0, lost_pages=4,
                                                        outcome="DATA-LOSS(4)", status="UNEXPECTED-ALLOW")}
    sample_run(out / "shards" / "shard-a", with_changes(cells[:3], out / "shards" / "shard-a", **changed))
    sample_run(out / "shards" / "shard-b", with_changes(cells[3:], out / "shards" / "shard-b"))
    env = {"PATH": "/usr/bin:/bin", "NIGHTLY_OUT": str(out), "NIGHTLY_PYTHON": sys.executable,
           "GITHUB_STEP_SUMMARY": str(tmp_path / "step.md")}
    proc = subprocess.run([str(SCRIPT), "report"], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    for name in ("results.json", "junit.xml", "results.ktap", "kcidb.json", "summary.html", "summary.md"):
        assert (out / name).is_file(), name
    assert "summary: 1 new" in (out / "compare.txt").read_text()
    assert (tmp_path / "step.md").read_text() == (out / "summary.md").read_text()
    assert "New problems" in (out / "summary.html").read_text()
    env["NIGHTLY_FAIL_ON_NEW"] = "1"
    assert subprocess.run([str(SCRIPT), "report"], capture_output=True, timeout=120, env=env).returncode == 1
