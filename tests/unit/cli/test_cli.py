"""The CLI: one parser, one-line errors, exit codes."""
import subprocess
import sys

from harness.cli.parser import COMMANDS, build_parser, main


def test_every_command_has_help(capsys):
    import pytest

    for name in COMMANDS:
        with pytest.raises(SystemExit) as exc:
            build_parser().parse_args([name, "--help"])
        assert exc.value.code == 0
        assert capsys.readouterr().out.startswith("usage: python -m harness " + name)


def test_bad_kernel_is_one_line_error_exit_2(tmp_path, capsys):
    junk = tmp_path / "bzImage"
    junk.write_bytes(b"not a kernel" * 100)
    assert main(["boot", "--kernel", str(junk)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("pinharness: error:") and "not a kernel image" in err


def test_module_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "harness", "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "boot" in out.stdout


def test_run_lists_accumulate_when_repeated():
    """--workload/--fs take comma lists and may be repeated; a repeat never silently replaces."""
    args = build_parser().parse_args(["run", "--workload", "vfio", "--workload", "odirect,rdma", "--fs", "xfs"])
    assert (args.workload, args.fs) == (["vfio", "odirect", "rdma"], ["xfs"])
    args = build_parser().parse_args(["run"])
    assert (args.workload, args.fs) == (None, None)  # run_cmd fills in: every workload, ext4 and xfs
