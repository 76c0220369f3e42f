"""The console golden corpus: NAME.log (input) + NAME.json (expected parse).

NAME.json holds {"source": where the log comes from, "crashes": [...]}; the
crash records are what ``expected(log_text)`` computes, so ``--update-golden``
can rewrite them while keeping the human-written "source".
"""
from __future__ import annotations

import json
from pathlib import Path

from harness.crash.console import CrashReport, Frame, parse
from harness.crash.report import crash_json

GOLDEN_DIR = Path(__file__).resolve().parent.parent / "golden" / "console"


def frame_text(frame: Frame) -> str:
    text = frame.function or (f"0x{frame.address:x}" if frame.address is not None else "?")
    if frame.offset is not None and frame.size is not None:
        text += f"+0x{frame.offset:x}/0x{frame.size:x}"
    if frame.module:
        text += f" [{frame.module}]"
    if frame.file:
        text += f" {frame.file}:{frame.line}"
    if frame.inlined:
        text += " [inline]"
    return text


def record(rep: CrashReport) -> dict:
    data = {k: v for k, v in crash_json(rep).items() if k not in ("frames", "report")}
    if not rep.subtype:  # absent: syzbot has no finer type for it
        del data["subtype"]
    data.update(start=rep.start, end=rep.end, report_lines=rep.report.count("\n"),
                frames=[frame_text(f) for f in rep.frames])
    return data


def expected(text: str) -> list[dict]:
    return [record(r) for r in parse(text)]


def cases() -> list[str]:
    return sorted(p.stem for p in GOLDEN_DIR.glob("*.log"))


def load(name: str) -> tuple[str, dict]:
    text = (GOLDEN_DIR / f"{name}.log").read_bytes().decode("utf-8", errors="replace")
    path = GOLDEN_DIR / f"{name}.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    return text, data


def write(name: str, data: dict) -> None:
    (GOLDEN_DIR / f"{name}.json").write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
