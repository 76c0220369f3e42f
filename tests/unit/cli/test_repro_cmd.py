"""`python -m harness repro`: exports a cell and says where; a bad directory is a one-line error."""
from harness.cli.parser import main
from repro_cells import make_cell


def test_the_command_exports_and_says_where(tmp_path, capsys):
    cell = make_cell(tmp_path, "odirect", stressors=("reclaim",))
    assert main(["repro", str(cell), "--out", str(tmp_path / "o")]) == 0
    said = capsys.readouterr().out
    name = f"repro-{cell.name}"
    assert f"reproduce: cd {tmp_path / 'o' / name} && ./qemu.sh" in said
    assert (tmp_path / "o" / f"{name}.tar.gz").is_file() and (tmp_path / "o" / name / "REPORT.md").is_file()
    assert main(["repro", str(tmp_path / "nothing")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a directory" in err[0]
