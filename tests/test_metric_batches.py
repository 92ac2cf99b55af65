"""A big first fetch is stored batch by batch; a body cut mid-way keeps whole batches only."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.faultserver import FaultServer, Reply, json_reply
from watcherd.alerts.state import AlertState
from watcherd.api.client import ApiClient
from watcherd.api.metricrows import BATCH_BYTES
from watcherd.config import ApiConfig, CommandHook, Config, HookConfig, PollConfig
from watcherd.model import dumps_exact
from watcherd.store import Store
from watcherd.watch.poller import Poller

pytestmark = pytest.mark.anyio

JOB_ID = "ft-batches"
T0 = 1_779_196_000_000_000_000
STEPS = 25_000


def job(status: str) -> dict[str, Any]:
    """The job object as the service sends it."""
    return {"id": JOB_ID, "status": status, "model": "m"}


def body() -> bytes:
    """A finished job's whole history, larger than two batches."""
    rows = [
        {"timestamp": T0 + s, "train/global_step": s, "train/loss": 1.0 / s, "train/lr": 1e-5}
        for s in range(1, STEPS + 1)
    ]
    data = dumps_exact({"metrics": rows}).encode()
    assert len(data) > 2 * BATCH_BYTES
    return data


@pytest.fixture
async def server() -> AsyncIterator[FaultServer]:
    """A loopback server answering with whatever each test queues."""
    async with FaultServer.running(json_reply(job("completed"))) as running:
        yield running


async def poll(store: Store, server: FaultServer, config: Config, *replies: Reply) -> None:
    """One poll of the job (one attempt per request, no retries)."""
    server.push(*replies)
    async with httpx.AsyncClient() as http:
        poller = Poller(store, ApiClient.from_config(http, config.api, "k", max_attempts=1), config)
        await poller.load_jobs()
        await poller.poll_once()


async def state(store: Store) -> tuple[int, str | None, int, int]:
    """Rows stored, the job's status, transitions and hook deliveries."""
    found = await store.job(JOB_ID)
    assert found is not None
    transitions = await store.transitions(JOB_ID)
    return (
        len(await store.metrics_json(JOB_ID)),
        found[0].status,
        len(transitions),
        len(await store.deliveries()),
    )


async def memory(store: Store) -> AlertState:
    """The alert rules' memory of the job, as stored."""
    return AlertState.from_json((await store.job_states())[JOB_ID].alert_state)


async def test_the_alert_rules_see_every_batch_of_a_big_page(
    server: FaultServer, tmp_path: Path
) -> None:
    """Every row of a page stored in batches reaches the rules, the first batch's too."""
    config = Config(api=ApiConfig(base_url=server.url, timeout=30.0, max_rate=0))
    async with Store.open(tmp_path / "w.db", writer=True) as store:
        await store.sync_watched([(JOB_ID, None)], 1.0)
        await poll(store, server, config, json_reply(job("running")), Reply(body=body()))
        state = await memory(store)
    assert state.seen == {"train": STEPS}
    assert state.run_start == (T0 + 1) / 1e9  # the page's first row, in its first batch
    assert state.last_train == (STEPS, T0 + STEPS)


async def test_a_cut_body_keeps_whole_batches_and_the_next_poll_finishes(
    server: FaultServer, tmp_path: Path
) -> None:
    """Cut mid-body: whole batches stay, the status and its hook are recorded, the job owes
    its metrics; the next poll fetches the rest from the cursor, with no second hook."""
    hook = HookConfig(name="done", action=CommandHook(("true",)))
    config = Config(
        api=ApiConfig(base_url=server.url, timeout=30.0, max_rate=0),
        poll=PollConfig(interval=1.0, min_interval=0.1, max_backoff=1.0),
        hooks=(hook,),
    )
    data = body()
    async with Store.open(tmp_path / "w.db", writer=True) as store:
        await store.sync_watched([(JOB_ID, None)], 1.0)
        # Sent in pieces, then the connection is reset mid-body.
        cut = Reply(body=data, chunk=256 * 1024, drip=0.05, cut_after=len(data) * 3 // 4)
        await poll(store, server, config, json_reply(job("completed")), cut)
        rows, status, transitions, deliveries = await state(store)
        assert 0 < rows < STEPS  # whole batches stored, not the whole body
        assert (status, transitions, deliveries) == ("completed", 1, 1)
        assert (await store.job_states())[JOB_ID].metrics_pending
        assert (await memory(store)).seen == {"train": rows}  # the stored rows, evaluated
        kept = await store.metrics_json(JOB_ID)
        assert [json.loads(t)["train/global_step"] for t in kept] == list(range(1, rows + 1))
        await poll(store, server, config, Reply(body=data))  # the catch-up: metrics only
        assert await state(store) == (STEPS, "completed", 1, 1)
        assert not (await store.job_states())[JOB_ID].metrics_pending
        assert (await store.metrics_summary(JOB_ID)).last_step == STEPS
