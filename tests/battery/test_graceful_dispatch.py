"""A graceful stop as the dispatcher sees it: new deliveries arriving during the grace period."""

from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path

import anyio
import httpx
import pytest

from tests.battery.hookprobe import executions, running_hooks
from watcherd.config import CommandHook, Config, HookConfig
from watcherd.model import INTERRUPTED, Delivery, DeliveryState
from watcherd.store import PollRecord, Store
from watcherd.watch.dispatcher import Dispatcher

pytestmark = pytest.mark.anyio


def probe_hook(log: Path, marker: str, sleep: float) -> HookConfig:
    """A command hook that appends its delivery id to `log`, then sleeps."""
    code = (
        "import os, sys, time; sys.stdin.read(); "
        f"open({str(log)!r}, 'a').write(os.environ['WATCHERD_DELIVERY_ID'] + '\\n'); "
        f"time.sleep({sleep})"
    )
    return HookConfig(
        name="probe", timeout=30.0, action=CommandHook(argv=(sys.executable, "-c", code, marker))
    )


async def complete(store: Store, config: Config, job_id: str) -> None:
    """Record `job_id` turning completed, which queues its hook delivery."""
    await store.sync_watched([(job_id, None)], time.time())
    record = PollRecord(job_id, time.time(), None, "completed", (), config.hooks)
    await store.record_poll(record)


async def hook_running(marker: str) -> None:
    """Return once a probe hook with `marker` in its command line runs (within 10 s)."""
    with anyio.fail_after(10):
        while not running_hooks(marker):  # noqa: ASYNC110 (a process, not an event)
            await anyio.sleep(0.02)


@pytest.mark.timeout(30)
async def test_wait_idle_returns_once_running_hooks_end_and_starts_no_more(
    tmp_path: Path,
) -> None:
    """In a stop's grace period no delivery starts (new or queued), and wait_idle returns."""
    marker, log = f"probe-{uuid.uuid4().hex}", tmp_path / "hook.log"
    config = Config(hooks=(probe_hook(log, marker, sleep=0.5),))
    async with (
        Store.open(tmp_path / "w.db", writer=True) as store,
        httpx.AsyncClient() as http,
        anyio.create_task_group() as tg,
    ):
        dispatcher = Dispatcher(store, http, config, concurrency=1)
        await complete(store, config, "ft-first")
        await complete(store, config, "ft-queued")  # waits for the one slot
        tg.start_soon(dispatcher.run)
        await hook_running(marker)
        started = time.monotonic()
        async with anyio.create_task_group() as waiting:
            waiting.start_soon(_bounded_wait_idle, dispatcher)
            await anyio.sleep(0.05)
            await complete(store, config, "ft-second")
            dispatcher.wake()
        waited = time.monotonic() - started
        tg.cancel_scope.cancel()
    states = {d.id: d.state for d in await _deliveries(tmp_path / "w.db")}
    assert waited < 2.0, f"wait_idle took {waited:.1f}s"
    assert executions(log) == {"ft-first:completed:probe": 1}
    assert states == {
        "ft-first:completed:probe": "delivered",
        "ft-queued:completed:probe": "pending",
        "ft-second:completed:probe": "pending",
    }


@pytest.mark.timeout(30)
async def test_an_attempt_cut_by_a_stop_or_by_a_crash_records_one_error_text(
    tmp_path: Path,
) -> None:
    """A hook killed by a stop and one a crash left running are both failed with INTERRUPTED."""
    marker, log = f"probe-{uuid.uuid4().hex}", tmp_path / "hook.log"
    config = Config(hooks=(probe_hook(log, marker, sleep=30),))
    async with (
        Store.open(tmp_path / "w.db", writer=True) as store,
        httpx.AsyncClient() as http,
    ):
        await complete(store, config, "ft-stopped")
        async with anyio.create_task_group() as tg:
            tg.start_soon(Dispatcher(store, http, config).run)
            await hook_running(marker)
            tg.cancel_scope.cancel()
        await complete(store, config, "ft-crashed")
        await store.start_attempt("ft-crashed:completed:probe", time.time())
        await store.recover_interrupted(time.time())
        cut = {d.id: (d.state, d.last_error) for d in await store.deliveries()}
    assert running_hooks(marker) == []
    assert cut == {
        "ft-stopped:completed:probe": (DeliveryState.FAILED, INTERRUPTED),
        "ft-crashed:completed:probe": (DeliveryState.FAILED, INTERRUPTED),
    }


async def _bounded_wait_idle(dispatcher: Dispatcher) -> None:
    with anyio.move_on_after(5):
        await dispatcher.wait_idle()


async def _deliveries(db: Path) -> list[Delivery]:
    async with Store.open(db, writer=False) as store:
        return await store.deliveries()
