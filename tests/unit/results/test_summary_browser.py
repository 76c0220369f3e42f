"""The HTML page in a real headless browser: it renders, and to far more than a blank page.

Needs Debian's `chromium` (apt-get install chromium; .ci/run installs it); skipped with that reason when absent.
The screenshot is kept at <tmp>/summary.png for a human to look at (pytest --basetemp=DIR).
"""
import shutil
import struct
import subprocess

import pytest

from harness.results.summary import write_html
from results_samples import cell_results, confirmed_results, sample_run, with_changes

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
SIZE = (1400, 900)


def _browser():
    for name in BROWSERS:
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("no headless browser: apt-get install chromium (.ci/run installs it)")


def screenshot(browser, page, png, profile):
    argv = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={profile}", f"--screenshot={png}", f"--window-size={SIZE[0]},{SIZE[1]}",
            page.as_uri()]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert png.is_file(), f"{browser} wrote no screenshot (exit {proc.returncode}): {proc.stderr[-500:]}"
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return data, struct.unpack(">II", data[16:24])


def test_page_renders_in_chromium(tmp_path):
    browser = _browser()
    cells = cell_results(tmp_path / "old")
    old = sample_run(tmp_path / "old", cells)
    new = sample_run(tmp_path / "new", with_changes(cells, tmp_path / "new", **{
        "debian-6.1-odirect-xfs-reclaim": dict(outcome="CLEAN", lost_pages=0, status="EXPECTED", ok=True)})
        + confirmed_results(tmp_path / "new"))
    page = write_html(new, tmp_path / "new" / "summary.html", previous=old)
    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><html><body></body></html>")
    data, size = screenshot(browser, page, tmp_path / "summary.png", tmp_path / "profile")
    blank_data, _ = screenshot(browser, blank, tmp_path / "blank.png", tmp_path / "profile")
    assert size == SIZE
    assert len(data) > 5 * len(blank_data)  # coloured tables and text, not an empty or error page
