"""Smaller hostile edges: an absurd ETA, absurd template widths, dates at the calendar's ends."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest

from tests.cliharness import watcherd
from tests.test_views_data import NOW, overview
from watcherd.config import parse_config
from watcherd.errors import ConfigError
from watcherd.hooks.payload import render
from watcherd.model import job_epoch, parse_iso_ns
from watcherd.store import Store
from watcherd.views.listing import eta, render_list

PATH = Path("/etc/watcherd/config.yaml")
NOTIFY = "hooks:\n  - name: n\n    notify:\n      urls_env: U\n      {key}: '{text}'\n"


def test_an_absurd_eta_is_shown_bounded() -> None:
    """`seconds_remaining: 1e300` shows as `> 1y`, not a 301-character number."""
    assert eta(overview(seconds_remaining=1e300, last_poll_at=NOW), NOW) == "> 1y"
    assert eta(overview(seconds_remaining=400 * 86400.0, last_poll_at=NOW), NOW) == "> 1y"
    assert eta(overview(seconds_remaining=3 * 86400.0, last_poll_at=NOW), NOW) == "3d"


def test_an_absurd_eta_drops_no_column() -> None:
    """At 100 columns a job with that estimate keeps every column a plain job keeps."""
    plain = render_list([overview()], now=NOW, color=False, width=100).splitlines()[0]
    absurd = overview(seconds_remaining=1e300, last_poll_at=NOW)
    header = render_list([absurd], now=NOW, color=False, width=100).splitlines()[0]
    assert header.split() == plain.split()


@pytest.mark.parametrize(
    "text",
    ["{job_id:>2000000000}", "{status:.999999999}", "{step:^1001}", "{model:{status}}"],
)
@pytest.mark.parametrize("key", ["title", "template"])
def test_absurd_template_specs_are_config_errors(key: str, text: str) -> None:
    """A width or precision over 1000, or a field inside a spec, names file, line and key."""
    started = time.monotonic()
    with pytest.raises(ConfigError) as info:
        parse_config(NOTIFY.format(key=key, text=text), path=PATH, environ={})
    assert time.monotonic() - started < 1.0
    assert str(info.value).startswith(f"{PATH}:5: hooks[0].notify.{key}: "), str(info.value)


def test_ordinary_template_specs_still_load() -> None:
    """Widths and precisions a message could use are fine."""
    config = parse_config(
        NOTIFY.format(key="template", text="{job_id:>20} {train_loss:.4} {status:-^30}"),
        path=PATH,
        environ={},
    )
    assert config.hooks[0].kind == "notify"


def test_rendering_bounds_any_width_it_is_given() -> None:
    """A template that never met the loader (or a spec built at run time) stays small."""
    text = render("{job_id:>2000000000}|{status:.3}", {"job_id": "ft-a", "status": "running"})
    assert text == "ft-a|run"


def test_dates_at_both_ends_of_the_calendar_parse() -> None:
    """Year 1 and year 9999 (with offsets that cross them) are nanoseconds, not errors."""
    assert parse_iso_ns("0001-01-01") == -62_135_596_800 * 10**9
    assert parse_iso_ns("0001-01-01T00:00:00+01:00") == (-62_135_596_800 - 3600) * 10**9
    assert parse_iso_ns("9999-12-31T23:59:59-05:00") == (253_402_300_799 + 5 * 3600) * 10**9


@pytest.mark.parametrize(
    "text",
    [
        "2026-05-19t13:09:53.5z",  # RFC 3339 allows lower case
        "2026-05-19T13:09:53.500000000000Z",  # more digits than nanoseconds
        "2026-05-19T13:09:53,5Z",  # ISO 8601's decimal comma
        "2026-05-19T18:09:53.5+05",  # ISO 8601's hour-only offset
        "2026-05-19T08:09:53.5-0500",
        "2026-05-19 13:09:53.5+00:00",
    ],
)
def test_other_iso_8601_forms_of_one_instant_parse_alike(text: str) -> None:
    """What another server may send for a job's `created_at` is read as the same instant."""
    assert job_epoch({"created_at": text}, "created_at") == 1_779_196_193.5
    assert parse_iso_ns(text) == 1_779_196_193_500_000_000


def test_a_bare_date_is_utc_whatever_the_local_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    """`2024-01-01` is midnight UTC and `2024-01-01+05:00` midnight there, even in Tokyo."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        assert parse_iso_ns("2024-01-01") == 1_704_067_200 * 10**9
        assert parse_iso_ns("2024-01-01+05:00") == (1_704_067_200 - 5 * 3600) * 10**9
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.timeout(60)
def test_metrics_takes_a_bound_before_the_64_bit_range(tmp_path: Path) -> None:
    """`metrics --logged-at-from 0001-01-01` reads the database instead of failing."""
    config = tmp_path / "watcherd.yaml"
    config.write_text("store: {path: watcherd.db}\njobs: {ids: [ft-a]}\n")

    async def create() -> None:
        async with Store.open(tmp_path / "watcherd.db", writer=True) as store:
            await store.ensure_jobs(["ft-a"])

    anyio.run(create, backend="asyncio")
    for bound in ("--logged-at-from", "--logged-at-to"):
        proc = watcherd(config, "metrics", "ft-a", bound, "0001-01-01", "--json")
        assert (proc.returncode, proc.stdout, proc.stderr) == (0, "[]\n", "")
