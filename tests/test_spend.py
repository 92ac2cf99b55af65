"""Spend: budget periods, grouping for `watcherd cost`, and the budget firing once per period."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.daemonharness import API_KEY, start_daemon, write_config
from tests.storeharness import query
from watcherd.config import parse_config, render_effective
from watcherd.errors import ConfigError
from watcherd.model import parse_iso_ns
from watcherd.sim import ManualClock, World, run_in_thread
from watcherd.spend import NANO, SpendRow, group, period, spent, total
from watcherd.store import HookSub, PollRecord
from watcherd.store.interface import StoreApi
from watcherd.store.opening import open_store
from watcherd.views.cost import cost_json, render_cost

T = datetime(2026, 12, 31, 23, 30, tzinfo=UTC).timestamp()
HOOKS = (HookSub("pager", ("budget.exceeded",)), HookSub("deploy", ("completed",)))


def _row(job: str, model: str, at: float, dollars: float, running: bool = False) -> SpendRow:
    return SpendRow(job, model, at, round(dollars * NANO), running)


ROWS = [
    _row("ft-a", "llama", T - 86400, 2.0),
    _row("ft-b", "llama", T - 60, 1.25),
    _row("ft-c", "qwen", T, 4.0, running=True),
]


def test_periods_are_utc_days_and_months() -> None:
    """The day and month holding a moment, [start, end), across a year's end."""
    day, month = period("daily", T), period("monthly", T)
    assert (day.key, month.key) == ("2026-12-31", "2026-12")
    assert day.end - day.start == 86400 and day.start <= T < day.end
    assert month.end == datetime(2027, 1, 1, tzinfo=UTC).timestamp()
    assert day.source == "budget:daily:2026-12-31"
    assert spent(ROWS, day.start, day.end) == round(5.25 * NANO)
    assert spent(ROWS, month.start, month.end) == round(7.25 * NANO)


def test_grouping_by_day_model_and_job() -> None:
    """Days oldest first; models and jobs costliest first; running jobs counted."""
    assert [(g.key, g.jobs, g.dollars) for g in group(ROWS, "day")] == [
        ("2026-12-30", 1, 2.0),
        ("2026-12-31", 2, 5.25),
    ]
    assert [(g.key, g.running) for g in group(ROWS, "model")] == [("qwen", 1), ("llama", 0)]
    assert [g.key for g in group(ROWS, "job")] == ["ft-c", "ft-a", "ft-b"]
    assert (total(ROWS).dollars, total(ROWS).running) == (7.25, 1)


def test_days_beyond_the_calendar_are_clamped_not_a_crash() -> None:
    """A job created (as its `created_at` says) outside years 1-9999 in UTC counts on the
    first or last day there is, instead of failing `cost` for every job; years before
    1000 keep four digits, so the days sort."""
    early = parse_iso_ns("0001-01-01T00:00:00+14:00") / 1e9  # year 0 in UTC
    late = parse_iso_ns("9999-12-31T23:59:59.9-23:59") / 1e9  # year 10000 in UTC
    first = parse_iso_ns("0001-01-01T12:00:00Z") / 1e9  # Go's zero time, near enough
    rows = [*ROWS, _row("ft-d", "llama", early, 1.0), _row("ft-e", "llama", late, 0.5)]
    rows.append(_row("ft-f", "llama", first, 0.0))
    assert [(g.key, g.jobs) for g in group(rows, "day")] == [
        ("0001-01-01", 2),
        ("2026-12-30", 1),
        ("2026-12-31", 2),
        ("9999-12-31", 1),
    ]


def test_cost_table_marks_running_jobs() -> None:
    """The table ends with a total and a note; running groups carry `*`; JSON is strict."""
    text = render_cost(ROWS, by="model", color=False, width=80)
    lines = text.splitlines()
    assert lines[0].split() == ["MODEL", "JOBS", "SPEND"]
    assert lines[1].split() == ["qwen", "1", "$4.00", "*"]
    assert lines[3].split() == ["total", "3", "$7.25", "*"]
    assert lines[-1] == "* includes 1 running job(s) at the last known price"
    data = cost_json(ROWS, by="day", since=None)
    assert json.loads(json.dumps(data, allow_nan=False)) == data
    assert data["total"] == {"key": "total", "jobs": 3, "dollars": 7.25, "running": 1}
    assert render_cost([], by="day", color=False, width=80) == "No priced jobs yet."


async def _record(store: StoreApi, job: str, created: float, price: int, at: float) -> None:
    """A completed job created at `created` (epoch), priced `price` nano-dollars."""
    iso = datetime.fromtimestamp(created, tz=UTC).isoformat()
    obj = {"id": job, "status": "completed", "created_at": iso, "total_price": price}
    await store.record_poll(PollRecord(job, at, obj, "completed", total_price=price))


async def _fire(db: str | Path, now: float, limits: Sequence[tuple[str, float]]) -> list[str]:
    async with open_store(db, writer=True) as store:
        chosen = [(period(name, now), round(dollars * NANO)) for name, dollars in limits]
        return await store.fire_budget(chosen, HOOKS, now)


@pytest.mark.anyio
async def test_budget_fires_once_per_period_across_restarts(store_target: str | Path) -> None:
    """Over the daily limit: one delivery for the day, none on later checks or reopens."""
    db = store_target
    async with open_store(db, writer=True) as store:
        await _record(store, "ft-a", T - 600, 3 * NANO, T)
    assert await _fire(db, T, [("daily", 5.0)]) == []
    async with open_store(db, writer=True) as store:
        await _record(store, "ft-b", T - 300, 3 * NANO, T)
    first = await _fire(db, T, [("daily", 5.0), ("monthly", 100.0)])
    assert first == ["budget:daily:2026-12-31:budget.exceeded:pager"]
    assert await _fire(db, T + 60, [("daily", 5.0)]) == []
    assert await _fire(db, T + 1200, [("daily", 5.0)]) == []  # still the same UTC day
    async with open_store(db, writer=True) as store:
        await _record(store, "ft-c", T + 3600, 6 * NANO, T + 3600)
    later = await _fire(db, T + 3600, [("daily", 5.0)])
    assert later == ["budget:daily:2027-01-01:budget.exceeded:pager"]
    async with open_store(db, writer=False) as store:
        events = [d.event for d in await store.deliveries()]
    assert events == ["budget.exceeded", "budget.exceeded"]


@pytest.mark.anyio
async def test_spend_reads_jobs_stored_before_the_price_columns(store_target: str | Path) -> None:
    """A job row from an older watcherd (price only in its job object) still counts, dated
    by its object's created_at; new rows date and price themselves; payload facts agree."""
    async with open_store(store_target, writer=True) as store:
        await _record(store, "ft-old", T - 600, 3 * NANO, T)
        await _record(store, "ft-new", T - 300, 2 * NANO, T)
        rec = PollRecord(
            "ft-run", T, {"id": "ft-run", "total_price": 5, "token_count": 8}, "running"
        )
        await store.record_poll(rec)
    forget = "UPDATE jobs SET total_price = NULL, job_created_at = NULL WHERE job_id = ?"
    assert query(store_target, forget + " RETURNING job_id", ("ft-old",)) == [("ft-old",)]
    async with open_store(store_target, writer=False) as store:
        rows = {r.job_id: r for r in await store.spend()}
        facts = await store.payload_facts("ft-run")
    assert rows["ft-old"] == SpendRow("ft-old", None, T - 600, 3 * NANO, False)
    assert rows["ft-new"] == SpendRow("ft-new", None, T - 300, 2 * NANO, False)
    assert (rows["ft-run"].total_price, rows["ft-run"].running) == (5, True)
    assert (facts.total_price, facts.token_count) == (5, 8)


def test_budget_config_and_hook_subscription(tmp_path: Path) -> None:
    """`budget:` takes positive dollars per day and month; hooks may subscribe to it."""
    text = "budget: {daily: 2.5}\nhooks:\n  - {name: p, on: [budget.exceeded], command: [x]}\n"
    config = parse_config(text, path=tmp_path / "c.yaml", environ={})
    assert config.budget.limits() == {"daily": 2.5}
    shown = render_effective(config, environ={})
    assert parse_config(shown, path=tmp_path / "c.yaml", environ={}).budget == config.budget
    assert config.hooks[0].on == ("budget.exceeded",)
    with pytest.raises(ConfigError, match=r"c.yaml:1: budget.monthly: must be a positive number"):
        parse_config("budget: {monthly: -1}\n", path=tmp_path / "c.yaml", environ={})
    with pytest.raises(ConfigError, match=r"budget\.weekly"):
        parse_config("budget: {weekly: 1}\n", path=tmp_path / "c.yaml", environ={})


@pytest.mark.timeout(120)
def test_daemon_fires_the_budget_once_across_restarts(tmp_path: Path) -> None:
    """Two `run --once` over a spent daily budget: the hook gets one `budget.exceeded`."""
    out = tmp_path / "payloads.jsonl"
    script = f"import sys; open({str(out)!r}, 'a').write(sys.stdin.read() + chr(10))"
    hooks = (
        "budget: {daily: 0.01}\nhooks:\n  - name: pager\n    on: [budget.exceeded]\n"
        f'    command: ["{sys.executable}", "-c", "{script}"]\n'
    )
    spec = {"created": "-2m", "steps": 5, "seconds_per_step": 1, "pending": 1, "queue": 1}
    world = World(
        {"seed": 4, "jobs": [spec | {"compress": 1, "upload": 1}]}, clock=ManualClock(time.time())
    )
    with run_in_thread(world, api_key=API_KEY) as sim:
        config = write_config(tmp_path, sim.base_url, world.job_ids(), hooks=hooks)
        for _ in range(2):
            assert start_daemon(config, "--once").wait(timeout=60) == 0
    payloads = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(payloads) == 1
    (payload,) = payloads
    assert payload["type"] == "budget.exceeded" and payload["period"] == "daily"
    assert (
        payload["price"] == world.job(world.job_ids()[0]).price / NANO and payload["limit"] == 0.01
    )
    assert payload["reason"].startswith("daily budget of $0.01 exceeded: $0.01 spent")
