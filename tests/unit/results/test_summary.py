"""summary: the HTML page and the Markdown job summary — content, colours, links, escaping."""
import re
from html.parser import HTMLParser
from pathlib import Path

from harness.cli import parser as cli
from harness.results import model as results
from harness.results.markdown import render_markdown
from harness.results.summary import STATUS_STYLE, build, render_html, write_html
from harness.results.model import JUNIT_STATUS
from results_samples import EVIL_TITLE, WARN_TITLE, cell_results, sample_run, with_changes

VOID = {"meta", "br", "link", "img", "input", "hr"}


class TagChecker(HTMLParser):
    """Collects hrefs and text, and checks that every non-void tag is closed in order."""

    def __init__(self):
        super().__init__()
        self.stack, self.errors, self.hrefs, self.text, self.tags = [], [], [], [], set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.hrefs += [v for k, v in attrs if k == "href"]
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack.pop() != tag:
            self.errors.append(tag)

    def handle_data(self, data):
        self.text.append(data)


def parse(html: str) -> TagChecker:
    checker = TagChecker()
    checker.feed(html)
    checker.close()
    return checker


def _planted(tmp_path):
    old_cells = cell_results(tmp_path / "old")
    old = sample_run(tmp_path / "old", old_cells)
    new = sample_run(tmp_path / "new", with_changes(old_cells, tmp_path / "new", **{
        "debian-6.12-odirect-ext4-reclaim": dict(release="6.12.10-amd64", pin_errno=0, titles=[WARN_TITLE],
                                                 outcome=f"WARNING({WARN_TITLE})", status="UNEXPECTED-ALLOW"),
        "debian-6.1-odirect-xfs-reclaim": dict(outcome="CLEAN", lost_pages=0, status="EXPECTED", ok=True)}))
    return old, new


def test_every_status_has_a_colour():
    assert set(JUNIT_STATUS) <= set(STATUS_STYLE)
    assert all(re.fullmatch(r"#[0-9a-f]{6}", bg) for bg, _, _ in STATUS_STYLE.values())


def test_html_is_escaped_balanced_and_self_contained(tmp_path):
    run = sample_run(tmp_path / "run")
    page = write_html(run, tmp_path / "run" / "summary.html").read_text()
    assert "<script" not in page and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "&amp;amp #1" in page  # an entity in a title is shown, not interpreted
    checker = parse(page)
    assert checker.errors == [] and checker.stack == []
    assert EVIL_TITLE in "".join(checker.text)
    assert not checker.tags & {"script", "link", "img", "iframe"} and "src=" not in page and "url(" not in page
    assert all(not h.startswith(("http:", "https:", "//", "/")) for h in checker.hrefs)


def test_html_matrix_colours_and_links(tmp_path):
    run = sample_run(tmp_path / "run")
    page_dir = tmp_path / "site"
    page_dir.mkdir()
    page = render_html(build(run), page_dir)
    assert page.count('<td class="slot ') == 2 * 5  # 2 kernels × (odirect, io_uring × 2 fs, vfio × ext4)
    assert 'class="slot st-KNOWN-BUG"' in page and 'class="slot st-CRASH"' in page
    assert 'class="slot empty"' in page  # vfio/ext4 was not run on 6.1
    assert f".st-CRASH {{ background: {STATUS_STYLE['CRASH'][0]}; }}" in page
    assert "lost 16 of 16 pages" in page and "lost 3 of 16 pages" in page
    hrefs = parse(page).hrefs
    report = "../run/debian-6.1-odirect-ext4-reclaim/reports.txt"
    assert report in hrefs and (page_dir / report).resolve().is_file()
    assert all((page_dir / h.replace("%2B", "+")).resolve().is_file() for h in hrefs)
    assert "../run/debian-6.1-io_uring-ext4-none/vm/console.log" in hrefs  # no report: the console
    assert "No previous results" in page


def test_html_since_last_run(tmp_path):
    old, new = _planted(tmp_path)
    page = render_html(build(new, old), tmp_path / "new")
    since = page[page.index("<h2>Since last run</h2>"):]
    assert "1 new, 0 fixed, 0 changed, 1 flaky" in since
    assert "New problems (1)" in since and "debian-6.12-odirect-ext4-reclaim" in since
    assert "6.12.9-amd64 → 6.12.10-amd64" in since and "+ WARNING: WARNING in ext4_dirty_folio" in since
    assert "Flaky (outcome changed, kernel release did not) (1)" in since
    assert ">NEW</span>" in page[:page.index("<h2>Since last run</h2>")]  # the badge in the matrix


def _table_rows(text):
    return [line for line in text.splitlines() if line.startswith("|")]


def test_markdown_table_survives_pipes_and_html(tmp_path):
    run = sample_run(tmp_path / "run")
    text = render_markdown(build(run))
    rows = _table_rows(text)
    assert len(rows) == 2 + 2
    cols = {len(re.findall(r"(?<!\\)\|", row)) for row in rows}
    assert cols == {7}  # kernel + 5 slots, every row: the titles' pipes are escaped
    assert "<script" not in text and "&lt;script&gt;" in text and r"xfs\_\|pipe\|\*bold\*" in text
    assert "💥 **CRASH**" in text and "🟨 **KNOWN\\-BUG**" not in text and "🟨 **KNOWN-BUG**" in text
    assert "debian\\-6.12 lacks" not in text and "CONFIG\\_VFIO\\_PCI" in text
    assert "No previous results to compare with." in text


def test_markdown_since_last_run(tmp_path):
    old, new = _planted(tmp_path)
    text = render_markdown(build(new, old), "nightly")
    assert text.startswith("## nightly\n")
    assert "**🆕 New problems** (1)" in text and "**🎲 Flaky" in text and "✅" not in text
    assert "🆕 NEW" in _table_rows(text)[3] and "🎲 FLAKY" in _table_rows(text)[2]


def test_summary_command(tmp_path, capsys):
    old, new = _planted(tmp_path)
    code = cli.main(["summary", str(new.path), "--previous", str(old.path),
                     "--html", str(tmp_path / "page.html"), "--markdown", str(tmp_path / "page.md")])
    assert code == 0 and "html:" in capsys.readouterr().out
    assert "New problems" in (tmp_path / "page.html").read_text()
    assert (tmp_path / "page.md").read_text().startswith("## pinharness matrix")
    assert cli.main(["summary", str(new.path)]) == 0
    assert "| kernel |" in capsys.readouterr().out
    assert cli.main(["summary", str(tmp_path / "missing.json")]) == 2


def test_merge_command_writes_every_format(tmp_path, capsys):
    cells = cell_results(tmp_path / "shards" / "a")
    sample_run(tmp_path / "shards" / "a", cells[:4])
    sample_run(tmp_path / "shards" / "b", with_changes(cells[4:], tmp_path / "shards" / "b"))
    out = tmp_path / "report"
    assert cli.main(["merge", str(tmp_path / "shards"), "--out", str(out), "--run-id", "gh42"]) == 0
    names = {p.name for p in out.iterdir()}
    assert names == {"results.json", "junit.xml", "results.ktap", "kcidb.json", "summary.html", "summary.md"}
    assert "merged 2 results file(s), 7 cells" in capsys.readouterr().out
    page = (out / "summary.html").read_text()
    assert 'href="../shards/a/debian-6.1-odirect-ext4-reclaim/reports.txt"' in page
    assert Path(out / "../shards/a/debian-6.1-odirect-ext4-reclaim/reports.txt").is_file()
    assert cli.main(["merge", str(tmp_path / "shards"), str(tmp_path / "shards" / "a"), "--out", str(out)]) == 2


def test_an_empty_run_renders(tmp_path):
    empty = results.RunResults([], {"created": "2026-01-01T00:00:00Z"})
    assert "No cells in this run." in render_markdown(build(empty, empty))
    checker = parse(render_html(build(empty, empty), tmp_path))
    assert checker.errors == [] and "0 cells" in "".join(checker.text)
