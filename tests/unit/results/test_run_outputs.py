"""`run --shard/--ktap/--kcidb/--html/--previous` without a VM: the VM layer is replaced by
fakes that return real CellResults, so this checks the run command's own wiring."""
import json
from dataclasses import dataclass
from pathlib import Path

from harness.cli import parser as cli
from harness.cli import run as run_cmd
from harness.pins.matrix import CellResult
from harness.vm.qemu import AccelChoice
from results_samples import sample_run, cell_results


@dataclass
class FakeKernel:
    spec: str

    @property
    def release(self):
        return {"debian:6.1": "6.1.0-26-amd64", "debian:6.12": "6.12.9-amd64"}[self.spec]

    def describe(self):
        return {"name": self.spec.replace(":", "-"), "source": self.spec, "release": self.release}


def _fake_vm_layer(monkeypatch, ran):
    def run_cell(cell, kernel, image, paths, out, accel, options, pages, log):
        ran.append(cell.id)
        (out / cell.id).mkdir(parents=True, exist_ok=True)
        return CellResult(cell, release=kernel.release, status="EXPECTED", ok=True, outcome="CLEAN", kind="CLEAN",
                          accel=accel.accel, artifacts=str(out / cell.id))

    monkeypatch.setattr(run_cmd, "build_rootfs", lambda paths, log=None: None)
    monkeypatch.setattr(run_cmd.kernel_mod, "resolve", lambda spec, paths, log=None: FakeKernel(spec))
    monkeypatch.setattr(run_cmd, "pick_accel", lambda *a: AccelChoice("tcg", "no /dev/kvm"))
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
