"""The one argparse front-end: `python -m harness <command>`.

Each command lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``; this file only lists them, so --help and docs come from
one parser (see ``build_parser``).
"""
from __future__ import annotations

import argparse
import importlib
import os
import signal
import subprocess
import sys
import threading
from typing import Callable, Optional, Sequence

from harness.errors import HarnessError, NoSpace, Terminated, is_enospc

# command name -> (module implementing it, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("harness.cli.run", "The main job: the pin matrix on the default (or given) kernels"),
    "setup": ("harness.cli.setup", "Install the host packages pinharness needs (qemu, mkfs tools, mmdebstrap, gcc)"),
    "boot": ("harness.cli.boot", "Boot a kernel in a guest and run shell commands in it"),
    "fetch-dbg": ("harness.cli.fetch_dbg", "Fetch Debian's -dbg vmlinux and debug modules for symbolized reports"),
    "report": ("harness.cli.report", "Parse a console/dmesg log into crash reports"),
    "compare": ("harness.cli.compare", "What changed between two runs' results (new, fixed, changed, flaky)"),
    "summary": ("harness.cli.summary", "The matrix as an HTML page and Markdown (with 'since last run')"),
    "merge": ("harness.cli.merge", "Merge CI shards' results and write JSON, JUnit, KTAP, kcidb, HTML, Markdown"),
    "build": ("harness.cli.build", "Build a kernel tree out of tree (O=) with kernel-configs/ fragments"),
    "bisect": ("harness.cli.bisect", "Find the commit that caused (or --fix: fixed) an outcome, by git bisect"),
    "repro": ("harness.cli.repro", "Turn one cell's finding into a reproducer that needs no pinharness (C, sh, QEMU)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m harness",
        description="Boot kernels in QEMU and race long-term page pins against ext4/xfs writeback.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (modname, help_text) in COMMANDS.items():
        module = importlib.import_module(modname)
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    main_thread = threading.current_thread() is threading.main_thread()  # only it may set a handler
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    previous_hook = sys.unraisablehook
    if main_thread:
        sys.unraisablehook = swallowed_stop_redelivered(previous_hook)
    try:
        return int(args._run(args) or 0)
    except Terminated as exc:
        print("pinharness: terminated (SIGTERM)", file=sys.stderr)
        return exc.exit_code
    except HarnessError as exc:
        print(f"pinharness: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except (OSError, subprocess.CalledProcessError) as exc:
        if not is_enospc(exc):
            raise
        where = os.path.dirname(exc.filename) if getattr(exc, "filename", None) else os.getcwd()
        err = NoSpace.at(where or ".", f"`{args.command}`")
        print(f"pinharness: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("pinharness: interrupted", file=sys.stderr)
        return 130
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
            sys.unraisablehook = previous_hook


def _terminate(signum, frame) -> None:
    raise Terminated()


REDELIVER_AFTER = 0.2  # seconds: by then the main thread has left the callback that swallowed the stop


def swallowed_stop_redelivered(previous: Callable) -> Callable:
    """An unraisablehook that gives back a Ctrl-C or SIGTERM Python had to swallow.

    A signal that lands while the main thread runs a callback whose exceptions Python can only
    report, e.g. an os.fork() at-fork hook as subprocess or pexpect starts a program ("Exception
    ignored in: <function _releaseLock>"), turned into a KeyboardInterrupt that nobody saw: the run went
    on, and a CI test waited 60 s for it to stop. The same signal is sent again a moment later,
    from a timer thread, when it can unwind the run as any other."""
    def hook(unraisable) -> None:
        exc = unraisable.exc_value
        if isinstance(exc, KeyboardInterrupt):
            signum = signal.SIGTERM if isinstance(exc, Terminated) else signal.SIGINT
            timer = threading.Timer(REDELIVER_AFTER, os.kill, (os.getpid(), signum))
            timer.daemon = True
            timer.start()
            return
        previous(unraisable)
    return hook


if __name__ == "__main__":
    sys.exit(main())
