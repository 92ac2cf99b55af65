"""`watcherd report` end to end: the daemon records finished jobs, the CLI writes the page."""

from __future__ import annotations

import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tests.cliharness import Recorded, recorded, watcherd

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"}
#: Charts each job of FINISHED should get: loss; DPO adds rewards and KL; no rows, none.
CHARTS = {"sft": 1, "dpo": 3, "err": 1, "nan": 1, "early": 0}


class Page(HTMLParser):
    """Checks tag balance while parsing; counts <svg> per <section id=...>."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.problems: list[str] = []
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []
        self.svgs: dict[str, int] = {}
        self.section = ""
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Push the tag; note its attributes, the section and its charts."""
        self.tags.append(tag)
        self.attrs.extend(attrs)
        if tag == "section":
            self.section = dict(attrs).get("id") or ""
        if tag == "svg":
            self.svgs[self.section] = self.svgs.get(self.section, 0) + 1
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """A self-closed tag (SVG shapes) opens and closes at once."""
        self.tags.append(tag)
        self.attrs.extend(attrs)

    def handle_endtag(self, tag: str) -> None:
        """Pop the tag, which must be the innermost open one."""
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
            return
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        """Keep the text, to look for job IDs."""
        self.text.append(data)


@pytest.fixture(scope="module")
def rec(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorded]:
    """Finished jobs recorded by `watcherd run --until-done`."""
    with recorded(tmp_path_factory.mktemp("report")) as found:
        yield found


@pytest.fixture(scope="module")
def page(rec: Recorded) -> tuple[str, Page]:
    """`watcherd report -o report.html` over every watched job, parsed."""
    out = rec.config.parent / "report.html"
    done = watcherd(rec.config, "report", "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"wrote {out} ({len(rec.ids)} jobs)\n"
    html = out.read_text(encoding="utf-8")
    parser = Page()
    parser.feed(html)
    parser.close()
    return html, parser


def test_report_is_balanced_html(page: tuple[str, Page]) -> None:
    """The page parses with every tag closed in order."""
    html, parsed = page
    assert html.startswith("<!DOCTYPE html>")
    assert parsed.problems == [] and parsed.stack == []


def test_report_has_one_svg_per_chart_and_names_every_job(
    rec: Recorded, page: tuple[str, Page]
) -> None:
    """Each job has a section naming it, with one inline <svg> per chart it has data for."""
    _, parsed = page
    text = " ".join(parsed.text)
    for suffix, job_id in rec.ids.items():
        assert job_id in text
        assert parsed.svgs.get(f"job-{job_id}", 0) == CHARTS[suffix], suffix


def test_report_is_self_contained(page: tuple[str, Page]) -> None:
    """No script, no external reference: links only to anchors in the page."""
    html, parsed = page
    assert "script" not in parsed.tags and "<script" not in html.lower()
    assert not {"img", "link", "iframe", "object", "embed"} & set(parsed.tags)
    for name, value in parsed.attrs:
        assert name != "src"
        if name == "href":
            assert value is not None and value.startswith("#")
    assert not re.search(r"https?://|@import|url\(", html.replace("http://www.w3.org/2000/svg", ""))


def test_report_for_chosen_jobs(rec: Recorded, tmp_path: Path) -> None:
    """`report JOB_ID -o FILE` covers just that job, and leaves no temporary file behind."""
    out = tmp_path / "one.html"
    done = watcherd(rec.config, "report", rec.ids["dpo"], "-o", str(out))
    assert done.returncode == 0, done.stderr
    html = out.read_text(encoding="utf-8")
    assert rec.ids["dpo"] in html and rec.ids["sft"] not in html
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.html"]


@pytest.mark.parametrize(
    ("job", "message"),
    [("ft-unknown", "ft-unknown is not in the database"), ("bogus", "invalid job ID 'bogus'")],
)
def test_bad_job_exits_2_and_keeps_the_old_report(
    rec: Recorded, tmp_path: Path, job: str, message: str
) -> None:
    """An unknown or malformed job ID: exit 2, and an existing report is left untouched."""
    out = tmp_path / "report.html"
    out.write_text("old report")
    done = watcherd(rec.config, "report", rec.ids["sft"], job, "-o", str(out))
    assert done.returncode == 2 and message in done.stderr
    assert out.read_text() == "old report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]


def test_unwritable_output_is_a_clear_error(rec: Recorded, tmp_path: Path) -> None:
    """A report into a missing folder: exit 1 naming the file, no traceback."""
    out = tmp_path / "no" / "such" / "report.html"
    done = watcherd(rec.config, "report", "-o", str(out))
    assert done.returncode == 1
    assert f"cannot write {out}" in done.stderr and "Traceback" not in done.stderr
