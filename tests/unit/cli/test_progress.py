"""What `run` prints while it works: elapsed time on every line, the ETA, download progress."""
import io
import threading

from harness.cli.progress import Progress, clock_text


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def _progress(**kw):
    clock, stream = Clock(), io.StringIO()
    return Progress(stream=stream, clock=clock, **kw), clock, stream


def test_clock_text():
    assert [clock_text(s) for s in (0, 59.9, 61, 3599, 3600, 3723)] == ["0:00", "0:59", "1:01", "59:59", "1:00:00",
                                                                        "1:02:03"]


def test_every_line_is_stamped_with_the_time_since_the_start():
    p, clock, stream = _progress()
    clock.now += 133
    p.log("pinharness: 28 cells -> results/x")
    assert stream.getvalue() == "[2:13] pinharness: 28 cells -> results/x\n"


def test_eta_once_a_few_cells_have_run_scaled_by_jobs():
    p, _, _ = _progress(total=10, jobs=2, eta_after=3)
    p.cell_done(0, ran=False)  # a SKIP takes no time and does not count towards the mean
    for seconds in (30, 40):
        p.cell_done(seconds)
    assert p.eta() is None and p.eta_text() == ""
    p.cell_done(50)
    assert p.eta() == 40 * 6 / 2 and p.eta_text() == ", ETA 2:00 (6 cells left)"
    for _ in range(6):
        p.cell_done(40)
    assert p.eta() is None  # done


def test_download_progress_is_rate_limited_and_says_when_done():
    p, clock, stream = _progress(download_every=5.0)
    progress = p.download("linux-image-6.12.57+deb13-amd64-unsigned")
    total = 100 << 20
    for done_mb in range(0, 101, 10):
        progress(done_mb << 20, total)
        clock.now += 2  # 2 s per 10 MB
    lines = stream.getvalue().splitlines()
    assert lines[0].endswith("downloading linux-image-6.12.57+deb13-amd64-unsigned: 0.0 MB of 100.0 MB (0%)")
    assert len(lines) == 5 and lines[-1].endswith("100.0 MB of 100.0 MB (100%), done")
    unknown = p.download("x")
    unknown(3 << 20, 0)
    assert stream.getvalue().splitlines()[-1].endswith("downloading x: 3.0 MB")


def test_lines_from_threads_do_not_interleave():
    p, _, stream = _progress()
    threads = [threading.Thread(target=lambda i=i: [p.log(f"cell {i} line {n}") for n in range(50)]) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 200 and all(line.startswith("[0:00] cell ") for line in lines)
