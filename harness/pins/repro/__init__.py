"""Reproducers: one matrix cell's finding as a directory a kernel developer runs without
pinharness (repro.c, repro.sh, qemu.sh + init.sh, REPORT.md) and a .tar.gz of it."""
from harness.pins.repro.export import Export, export
from harness.pins.repro.finding import Finding, load

__all__ = ["Export", "Finding", "export", "load"]
