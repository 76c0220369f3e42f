"""`python -m harness report LOG`: crash reports from a console/dmesg log.

Text output reads like a syzbot report (title, then the report with its stack
decoded when --vmlinux is given); --format json gives
{"crashes": [{"title", "alt_titles", "type", "subtype", "corrupted", "corrupted_reason",
"guilty_file", "frames": [{"function", "offset", "file", "line", "inlined"}],
"report"}]} with an empty list when the log holds no crash.  "subtype" is syzbot's finer
type ("KASAN-USE-AFTER-FREE-WRITE"), "" when it has none.  Events that are no crash (type
"OOM": the OOM killer ended a process) are listed too, after the crashes.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from harness.crash import console
from harness.crash.report import render_json, render_text
from harness.errors import HarnessError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("log", metavar="LOG", help="console or dmesg log file ('-' reads standard input)")
    parser.add_argument("--vmlinux", type=Path, metavar="PATH",
                        help="vmlinux with DWARF (e.g. Debian's linux-image-*-dbg) to decode the stacks")
    parser.add_argument("--modules", type=Path, metavar="DIR",
                        help="directory searched for <module>.ko (or .ko.debug) files with DWARF")
    parser.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")


def read_log(name: str) -> bytes:
    if name == "-":
        return sys.stdin.buffer.read()
    path = Path(name)
    try:
        return path.read_bytes()
    except IsADirectoryError:
        raise HarnessError(f"{path} is a directory: give the console log file itself") from None
    except FileNotFoundError:
        raise HarnessError(f"{path} does not exist: give the path of a console or dmesg log") from None
    except OSError as exc:
        raise HarnessError(f"cannot read {path} ({exc.strerror}): check its permissions") from None


def run(args: argparse.Namespace) -> int:
    reports = console.parse_bytes(read_log(args.log))
    if args.vmlinux is not None:
        from harness.crash import symbolize  # pyelftools is only needed for decoding

        symbolize.symbolize(reports, args.vmlinux, args.modules)
    elif args.modules is not None:
        raise HarnessError("--modules needs --vmlinux: give the vmlinux with DWARF too")
    out = render_json(reports) if args.format == "json" else render_text(reports)
    sys.stdout.write(out)
    return 0
