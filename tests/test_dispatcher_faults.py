"""The dispatcher against inputs that break an attempt: it counts them, it never crashes."""

from __future__ import annotations

import json
import math
import sqlite3
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from watcherd.config import CommandHook, Config, HookConfig
from watcherd.hooks.payload import strict_json
from watcherd.model import Delivery
from watcherd.store import PollRecord, Store
from watcherd.watch.dispatcher import Dispatcher

pytestmark = pytest.mark.anyio

JOB_ID = "ft-deep"
DELIVERY = f"{JOB_ID}:completed:probe"


def probe(log: Path, max_attempts: int = 3) -> HookConfig:
    """A command hook that appends the payload it reads on stdin to `log`."""
    code = f"import sys; open({str(log)!r}, 'a').write(sys.stdin.read() + '\\n')"
    return HookConfig(
        name="probe",
        timeout=30.0,
        max_attempts=max_attempts,
        action=CommandHook(argv=(sys.executable, "-c", code)),
    )


def nested(depth: int) -> dict[str, Any]:
    """An object nested `depth` levels deep, a NaN at the bottom."""
    inner: dict[str, Any] = {"loss": math.nan}
    for _ in range(depth - 1):
        inner = {"a": inner}
    return inner


@dataclass
class Bench:
    """A store with one completed job (its delivery queued), a dispatcher, a movable clock."""

    store: Store
    dispatcher: Dispatcher
    log: Path
    now: float = 1000.0

    async def drain(self) -> Delivery:
        """Run every due delivery, then return the probe's delivery row."""
        await self.dispatcher.drain()
        (delivery,) = await self.store.deliveries()
        return delivery


@pytest.fixture
async def bench(tmp_path: Path) -> AsyncIterator[Bench]:
    """`ft-deep` completed with a 600-level job object (json.loads accepts it)."""
    log = tmp_path / "hook.log"
    config = Config(hooks=(probe(log),))
    async with Store.open(tmp_path / "w.db", writer=True) as store, httpx.AsyncClient() as http:
        await store.sync_watched([(JOB_ID, None)], 1.0)
        job = {"id": JOB_ID, "status": "completed", "x": nested(600)}
        await store.record_poll(PollRecord(JOB_ID, 1.0, job, "completed", (), config.hooks))
        found = Bench(store, Dispatcher(store, http, config), log)
        found.dispatcher.wall = lambda: found.now
        yield found


def test_strict_json_takes_any_depth() -> None:
    """100,000 levels: no RecursionError, the same structure with NaN as None."""
    copied = strict_json(nested(100_000))
    for _ in range(100_000 - 1):
        copied = copied["a"]
    assert copied == {"loss": None}
    assert strict_json({1: (math.inf, [2.5, "x"])}) == {"1": [None, [2.5, "x"]]}


async def test_a_deeply_nested_stored_job_is_delivered(bench: Bench) -> None:
    """A job object stored 600 levels deep (before the API refused those) still goes out."""
    delivery = await bench.drain()
    assert (delivery.state, delivery.attempts) == ("delivered", 1)
    payload = json.loads(bench.log.read_text())
    assert payload["job"]["x"]["a"]["a"] is not None


async def test_an_attempt_that_raises_counts_and_ends_dead(bench: Bench, tmp_path: Path) -> None:
    """An unreadable stored job object: each attempt fails, is logged and counted; then dead."""
    with sqlite3.connect(tmp_path / "w.db") as conn:
        conn.execute('UPDATE jobs SET job_json = \'{"id": "ft-de\' WHERE job_id = ?', (JOB_ID,))
    states = []
    with capture_logs() as logs:
        for _ in range(4):
            delivery = await bench.drain()
            states.append((delivery.state, delivery.attempts))
            bench.now += 3600.0
    assert states == [("failed", 1), ("failed", 2), ("dead", 3), ("dead", 3)]
    assert "raised JSONDecodeError" in (delivery.last_error or "")
    events = [e["event"] for e in logs if e["log_level"] in ("warning", "error")]
    assert events == ["hook.failed", "hook.failed", "hook.dead"]
    assert not bench.log.exists()


async def test_attempts_cut_by_crashes_count_toward_max_attempts(bench: Bench) -> None:
    """A delivery whose every attempt was cut by a crash is dead at max_attempts, not run again."""
    for _ in range(3):  # three starts, each killed mid-attempt, each recovered on restart
        await bench.store.start_attempt(DELIVERY, bench.now)
        await bench.store.recover_interrupted(bench.now)
    with capture_logs() as logs:
        delivery = await bench.drain()
    assert (delivery.state, delivery.attempts) == ("dead", 3)
    assert "interrupted" in (delivery.last_error or "")
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["hook.dead"]
    assert not bench.log.exists()
