"""The HTML report: well-formed, self-contained, escaped, one SVG per chart, small."""

from __future__ import annotations

import math
from html.parser import HTMLParser

from tests.test_views_data import NOW, RAW_JOB, delivery, history, overview, transitions
from watcherd.model import MetricRow
from watcherd.views._svg import MAX_POINTS, downsample
from watcherd.views.report import ReportJob, render_report

VOID = frozenset({"meta", "br", "hr", "img", "input", "link"})
EVIL = "<script>alert(1)</script>"


class StrictChecker(HTMLParser):
    """Fails on an unbalanced or mismatched tag; counts tags by name."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.counts: dict[str, int] = {}
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Open a tag (void elements close themselves)."""
        self.counts[tag] = self.counts.get(tag, 0) + 1
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """A self-closed tag (`<path/>` in SVG)."""
        self.counts[tag] = self.counts.get(tag, 0) + 1

    def handle_endtag(self, tag: str) -> None:
        """Close the innermost open tag, which must be this one."""
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        """Keep the text, to look for what must not be there."""
        self.text.append(data)


def _check(page: str) -> StrictChecker:
    """Parse the page strictly; every tag must be closed."""
    checker = StrictChecker()
    checker.feed(page)
    checker.close()
    assert checker.stack == [], f"unclosed: {checker.stack}"
    return checker


def dpo_history(steps: int = 30) -> list[MetricRow]:
    """A DPO history with rewards, margins and KL, one reward NaN."""
    rows: list[MetricRow] = []
    for step in range(1, steps + 1):
        rows.append(
            {
                "train/global_step": step,
                "train/loss": 0.69 - step / 100,
                "train/rewards/chosen": step / 50,
                "train/rewards/rejected": math.nan if step == 7 else -step / 60,
                "train/rewards/margins": step / 50 + step / 60,
                "train/kl": 0.001 * step,
            }
        )
    return rows


def _jobs() -> list[ReportJob]:
    """An SFT job, a DPO job with a hostile output name, a job with no data at all."""
    evil_raw = dict(RAW_JOB, id="ft-0002", model_output_name=EVIL, wandb_url="https://wandb.ai/x")
    return [
        ReportJob(overview(), RAW_JOB, transitions(), history(), [delivery()]),
        ReportJob(
            overview("ft-0002", note="<b>dpo</b>", model_output_name=EVIL),
            evil_raw,
            transitions("ft-0002"),
            dpo_history(),
        ),
        ReportJob(overview("ft-0003", status=None, step=None)),
    ]


def test_report_is_well_formed() -> None:
    """The page parses with every tag balanced."""
    _check(render_report(_jobs(), generated_at=NOW))


def test_one_svg_per_chart() -> None:
    """SFT: a loss chart; DPO: loss, rewards and KL charts; no metrics: none."""
    checker = _check(render_report(_jobs(), generated_at=NOW))
    assert checker.counts["svg"] == 1 + 3
    sft = render_report(_jobs()[:1], generated_at=NOW)
    assert sft.count("<svg") == 1 and sft.count("<polyline") == 2  # train and eval loss


def test_names_every_job() -> None:
    """Every job id appears in the page."""
    page = render_report(_jobs(), generated_at=NOW)
    assert all(job.overview.job_id in page for job in _jobs())


def test_self_contained() -> None:
    """No script, no external reference, an inline print stylesheet."""
    page = render_report(_jobs(), generated_at=NOW)
    assert "<script" not in page.lower()
    assert "http://" not in page and "https://" not in page
    assert "@media print" in page


def test_escapes_hostile_fields() -> None:
    """A job field holding markup is shown as text, never as markup."""
    page = render_report(_jobs(), generated_at=NOW)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<b>dpo</b>" not in page and "&lt;b&gt;dpo&lt;/b&gt;" in page


def test_nan_points_marked_and_log_noted() -> None:
    """NaN points get a marker; a range over 100× is drawn on a log scale."""
    page = render_report(_jobs(), generated_at=NOW)
    assert 'class="nan"' in page and "train/rewards/rejected: nan at step 7" in page
    rows: list[MetricRow] = [
        {"train/global_step": s, "train/loss": 10.0 ** (-s / 10)} for s in range(1, 60)
    ]
    assert "(log scale)" in render_report([ReportJob(overview(), metrics=rows)], generated_at=NOW)


def test_long_history_gives_a_small_page() -> None:
    """A 200,000-step job is downsampled to at most ~1,000 points per polyline."""
    rows: list[MetricRow] = [
        {"train/global_step": s, "train/loss": 2 / (1 + s / 1000) + (s % 17) / 1000}
        for s in range(200_000)
    ]
    page = render_report([ReportJob(overview(), metrics=rows)], generated_at=NOW)
    assert len(page) < 60_000
    points = page.split('points="', 1)[1].split('"', 1)[0].split()
    assert len(points) <= MAX_POINTS


def test_downsample_keeps_extremes() -> None:
    """Min/max buckets keep a single spike and both ends' order."""
    ys = [1.0] * 10_000
    ys[4321] = 50.0
    xs, kept = downsample(list(range(10_000)), ys, limit=100)
    assert max(kept) == 50.0 and len(kept) <= 100 and xs == sorted(xs)
