"""`watcherd wait`: block until jobs are terminal, with or without the daemon.

With the daemon running, wait reads the database it keeps up to date. Without
it, wait polls the jobs itself and records what it sees (hooks then fire the next
time the daemon runs, from the outbox).
"""

from __future__ import annotations

import math

import anyio
import httpx

from watcherd.config import Config
from watcherd.daemon import build_api
from watcherd.model import MISSING, is_terminal
from watcherd.poller import Poller
from watcherd.store import Store

#: How often the database is read when the daemon does the polling.
READ_INTERVAL = 1.0


def _settled(status: str | None) -> bool:
    return status is not None and (is_terminal(status) or status == MISSING)


async def wait_for(
    config: Config, job_ids: list[str], limit: float | None
) -> dict[str, str | None]:
    """The jobs' statuses once all are terminal (or when `limit` seconds run out)."""
    statuses: dict[str, str | None] = dict.fromkeys(job_ids)
    with anyio.move_on_after(math.inf if limit is None else limit):
        if Store.daemon_running(config.store.path):
            await _read_until_settled(config, statuses)
        else:
            await _poll_until_settled(config, statuses)
    return statuses


async def _read_until_settled(config: Config, statuses: dict[str, str | None]) -> None:
    async with Store.open(config.store.path, writer=False) as store:
        while True:
            for job_id in statuses:
                found = await store.job(job_id)
                statuses[job_id] = found[0].status if found else None
            if all(_settled(s) for s in statuses.values()):
                return
            await anyio.sleep(READ_INTERVAL)


async def _poll_until_settled(config: Config, statuses: dict[str, str | None]) -> None:
    async with Store.open(config.store.path, writer=True) as store, httpx.AsyncClient() as http:
        await store.ensure_jobs(list(statuses))
        poller = Poller(store, build_api(http, config), config)
        await poller.load_jobs(only=set(statuses))
        while True:
            await poller.poll_due()
            for job_id, sched in poller.jobs.items():
                statuses[job_id] = sched.status
            if all(_settled(s) for s in statuses.values()):
                return
            await anyio.sleep(0.2)
