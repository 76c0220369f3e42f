"""`run --shard/--ktap/--kcidb/--html/--previous` without a VM: the VM layer is replaced by
fakes that return real CellResults, so this checks the run command's own wiring."""
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from harness.cli import parser as cli
from harness.cli import run as run_cmd
from harness.pins.matrix import CellResult
from harness.vm.qemu import AccelChoice
from results_samples import sample_run, cell_results


@dataclass
class FakeKernel:
    spec: str
    config: dict = field(default_factory=dict)  # {}: unknown, as for a bare bzImage
    arch: str = "x86_64"

    def missing_config(self, *options):
        return [f"CONFIG_{o}" for o in options if self.config.get(f"CONFIG_{o}") not in ("y", "m")]

    @property
    def release(self):
        return {"debian:6.1": "6.1.0-26-amd64", "debian:6.12": "6.12.9-amd64"}[self.spec]

    def describe(self):
        return {"name": self.spec.replace(":", "-"), "source": self.spec, "release": self.release}


CLEAN = dict(status="EXPECTED", ok=True, outcome="CLEAN", kind="CLEAN")


def _fake_vm_layer(monkeypatch, ran, script=None, config=None, accel_log=()):
    """``script``: cell id -> the CellResult fields of its 1st, 2nd... run (default: CLEAN, as expected);
    ``config``: every kernel's config (default unknown); ``accel_log``: what pick_accel says."""
    def run_cell(cell, kernel, image, paths, out, accel, options, pages, log):
        ran.append(cell.id)
        n = sum(1 for i in ran if i == cell.id)
        (out / cell.id).mkdir(parents=True, exist_ok=True)
        fields = (script or {}).get(cell.id, [CLEAN])[n - 1]
        return CellResult(cell, release=kernel.release, accel=accel.accel, artifacts=str(out / cell.id), seconds=20.0,
                          **fields)

    def pick_accel(requested, kernel, paths, workdir, log):
        for line in accel_log:
            log(line)
        return AccelChoice("tcg", "no /dev/kvm")

    monkeypatch.setattr(run_cmd, "build_rootfs", lambda paths, log=None, arch="x86_64": None)
    monkeypatch.setattr(run_cmd.kernel_mod, "resolve", lambda spec, paths, **kw: FakeKernel(spec, dict(config or {})))
    monkeypatch.setattr(run_cmd, "pick_accel", pick_accel)
    monkeypatch.setattr(run_cmd, "run_cell", run_cell)


def test_shards_and_extra_outputs(tmp_path, monkeypatch, capsys):
    ran = []
    _fake_vm_layer(monkeypatch, ran)
    previous = sample_run(tmp_path / "previous", cell_results(tmp_path / "previous"))
    base = ["run", "--kernel", "debian:6.1", "--kernel", "debian:6.12", "--fs", "ext4,xfs", "--workload",
            "odirect,io_uring"]
    for i in (1, 2, 3):
        out = tmp_path / f"shard{i}"
        argv = base + ["--shard", f"{i}/3", "--out", str(out), "--ktap", "--kcidb", "--html",
                       "--previous", str(previous.path)]
        assert cli.main(argv) == 0
        doc = json.loads((out / "results.json").read_text())
        assert doc["shard"] == f"{i}/3" and len(doc["cells"]) in (2, 3)
        assert {p.name for p in out.glob("*.*")} >= {"results.json", "junit.xml", "results.ktap", "kcidb.json",
                                                     "summary.html"}
        assert "Since last run" in (out / "summary.html").read_text()
    assert len(ran) == len(set(ran)) == 2 * 2 * 2  # every cell ran exactly once across the shards
    text = capsys.readouterr().out
    assert "since " in text and "unchanged" in text and "ktap: " in text


def test_without_flags_only_json_and_junit(tmp_path, monkeypatch):
    _fake_vm_layer(monkeypatch, [])
    out = tmp_path / "plain"
    assert cli.main(["run", "--kernel", "debian:6.1", "--fs", "ext4", "--workload", "odirect", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir() if p.is_file()) == ["junit.xml", "results.json"]
    assert "shard" not in json.loads((out / "results.json").read_text())
    assert Path(out / "debian-6.1-odirect-ext4-reclaim").is_dir()


LEAK = dict(status="UNEXPECTED", ok=False, outcome="PIN-LEAK(1)", kind="PIN-LEAK", detail="PIN-LEAK(1): pin leak of 1")
KVM_XFS, KVM_EXT4 = "debian-6.12-kvm-xfs-bh-fill+reclaim", "debian-6.12-kvm-ext4-bh-fill+reclaim"


def _kvm_run(tmp_path, monkeypatch, script, *extra):
    ran = []
    _fake_vm_layer(monkeypatch, ran, script)
    out = tmp_path / "out"
    code = cli.main(["run", "--kernel", "debian:6.12", "--workload", "kvm", "--out", str(out), *extra])
    return code, ran, out, {c["cell"]["id"]: c for c in json.loads((out / "results.json").read_text())["cells"]}


def test_a_reproduced_surprise_fails_the_run(tmp_path, monkeypatch, capsys):
    code, ran, out, cells = _kvm_run(tmp_path, monkeypatch, {KVM_XFS: [LEAK, LEAK, LEAK]})
    assert code == 1 and ran.count(KVM_XFS) == 3 and ran.count(KVM_EXT4) == 1
    assert (cells[KVM_XFS]["status"], cells[KVM_XFS]["runs"], cells[KVM_XFS]["reproduced"]) == ("UNEXPECTED", 3, 3)
    assert [a["artifacts"] for a in cells[KVM_XFS]["attempts"]] == [
        str(out / KVM_XFS), str(out / "attempt-2" / KVM_XFS), str(out / "attempt-3" / KVM_XFS)]
    assert cells[KVM_EXT4]["attempts"] == [] and cells[KVM_EXT4]["runs"] == 1
    err = capsys.readouterr()
    assert f"[2/2] {KVM_XFS}: UNEXPECTED on run 1, confirming: run 3 of 3" in err.err
    assert f"[2/2] {KVM_XFS}: PIN-LEAK(1) -> UNEXPECTED (reproduced 3/3) (60s)" in err.err
    assert "UNEXPECTED 3/3 !" in err.out


def test_a_surprise_seen_once_is_flaky_and_does_not_fail(tmp_path, monkeypatch, capsys):
    code, ran, _, cells = _kvm_run(tmp_path, monkeypatch, {KVM_XFS: [LEAK, CLEAN, CLEAN]})
    assert code == 0 and ran.count(KVM_XFS) == 3
    assert (cells[KVM_XFS]["status"], cells[KVM_XFS]["ok"], cells[KVM_XFS]["reproduced"]) == ("FLAKY", True, 1)
    assert f"  {KVM_XFS}: FLAKY (1/3), first run PIN-LEAK(1)" in capsys.readouterr().out


def test_confirm_zero_and_confirm_known(tmp_path, monkeypatch):
    code, ran, _, cells = _kvm_run(tmp_path, monkeypatch, {KVM_XFS: [LEAK]}, "--confirm", "0")
    assert code == 1 and ran.count(KVM_XFS) == 1 and cells[KVM_XFS]["status"] == "UNEXPECTED"
    bug = dict(status="KNOWN-BUG", ok=True, outcome="DATA-LOSS(16)", kind="DATA-LOSS", bug=True)
    code, ran, _, cells = _kvm_run(tmp_path, monkeypatch, {KVM_XFS: [bug, bug, bug, CLEAN]}, "--confirm-known", "3")
    assert code == 0 and ran.count(KVM_XFS) == 4 and (cells[KVM_XFS]["runs"], cells[KVM_XFS]["reproduced"]) == (4, 3)


def test_bad_confirm_count_is_a_usage_error(capsys):
    import pytest

    with pytest.raises(SystemExit) as exc:
        cli.build_parser().parse_args(["run", "--confirm", "two"])
    assert exc.value.code == 2 and "'two' is not a count" in capsys.readouterr().err


GUP_LESS = {"CONFIG_MEMCG": "y", "CONFIG_KVM": "m", "CONFIG_IOMMUFD": "y", "CONFIG_DEBUG_FS": "y"}


def test_cells_the_kernels_cannot_run_are_left_out_with_one_line(tmp_path, monkeypatch, capsys):
    ran = []
    _fake_vm_layer(monkeypatch, ran, config=GUP_LESS)
    out = tmp_path / "out"
    base = ["run", "--kernel", "debian:6.1", "--kernel", "debian:6.12", "--fs", "ext4"]
    assert cli.main(base + ["--out", str(out)]) == 0  # the default workloads
    err = capsys.readouterr().err
    line = next(line for line in err.splitlines() if "left out" in line)
    assert "] pinharness: left out " in line and sum(1 for x in err.splitlines() if "left out" in x) == 1
    assert "gup_test needs CONFIG_GUP_TEST" in line and "iommufd needs CONFIG_IOMMUFD_TEST" in line
    assert "vhost_vdpa needs CONFIG_VHOST_VDPA, CONFIG_VDPA_SIM_NET" in line and "kvm" not in line.split("(")[1]
    assert "python -m harness build --tree ~/linux --config base,pins" in line and "--all" in line
    assert set(ran) == {f"{k}-{w}-ext4-{st}" for k in ("debian-6.1", "debian-6.12")
                        for w, st in (("odirect", "reclaim"), ("kvm", "bh-fill+reclaim"), ("mkclean_race", "none"))}
    assert "left out 16 cells that debian:6.1, debian:6.12 cannot run" in line
    assert len(json.loads((out / "results.json").read_text())["cells"]) == 6
    # named with --workload, or --all: listed (run_cell makes them SKIP)
    ran.clear()
    assert cli.main(base + ["--out", str(tmp_path / "named"), "--workload", "gup_test,kvm"]) == 0
    assert len(ran) == 4 and "left out" not in capsys.readouterr().err
    ran.clear()
    assert cli.main(base + ["--out", str(tmp_path / "all"), "--all"]) == 0
    assert len(ran) == 2 * 11  # the default workloads (not mkclean_race_thp: run only when named)


def test_progress_lines_carry_elapsed_time_eta_and_one_accel_line(tmp_path, monkeypatch, capsys):
    warning = "pinharness: warning: KVM not used, falling back to TCG (no /dev/kvm)"
    _fake_vm_layer(monkeypatch, [], accel_log=[warning])
    argv = ["run", "--kernel", "debian:6.1", "--workload", "odirect,io_uring,vfio", "--out", str(tmp_path / "o")]
    assert cli.main(argv) == 0
    err = capsys.readouterr().err.splitlines()
    assert err and all(re.match(r"\[\d+:\d\d\] ", line) for line in err)
    assert sum(1 for line in err if "TCG" in line or "accelerator" in line) == 1
    done = [line for line in err if " -> EXPECTED" in line]
    assert len(done) == 6 and "ETA" not in done[1] and re.search(r", ETA \d+:\d\d \(3 cells left\)$", done[2])
    assert "ETA" not in done[-1]
