"""`watcherd cancel JOB_ID [--yes]`: cancel a job on the service, as a person.

The together CLI's rules: look at the job first and refuse when it is
`cancel_requested`, `cancelled`, `error`, `completed` or `user_error`; otherwise ask
y/N unless `--yes`. Off a terminal there is nobody to ask, so `--yes` is required.
The cancel is recorded in the database (if there is one) as requested by the user,
which also settles any cancel a rule had decided and not yet made.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import anyio

from watcherd.api.client import ApiClient, Job
from watcherd.cli.common import load
from watcherd.config import Config
from watcherd.errors import UsageError, WatcherdError
from watcherd.model import NON_CANCELLABLE_STATUSES, validate_job_id
from watcherd.store.opening import open_configured, store_exists
from watcherd.watch.wiring import build_api

REASON = "watcherd cancel, run by a person"


def cmd_cancel(args: argparse.Namespace) -> int:
    """`watcherd cancel JOB_ID [--yes]`: 0 once the service accepted the cancel."""
    config = load(args)
    try:
        job_id = validate_job_id(args.job_id)
    except WatcherdError as exc:
        raise UsageError(str(exc)) from exc
    if not args.yes and not sys.stdin.isatty():
        raise UsageError("not on a terminal, so nobody can confirm: add --yes to cancel")
    return anyio.run(_cancel, config, job_id, None if args.yes else _ask, backend="asyncio")


def _ask(job: Job) -> bool:
    """y/N on the terminal."""
    model = job.model_output_name or job.model or "?"
    answer = input(f"Cancel {job.id} ({job.status}, {model})? This cannot be undone. [y/N] ")
    return answer.strip().lower() in ("y", "yes")


async def _cancel(config: Config, job_id: str, ask: Callable[[Job], bool] | None) -> int:
    async with ApiClient.http_client(config.api) as http:
        api = build_api(http, config)
        job = await api.retrieve(job_id)
        if job.status in NON_CANCELLABLE_STATUSES:
            print(
                f"watcherd cancel: {job_id} is {job.status}: a job that is finished or"
                " being cancelled cannot be cancelled",
                file=sys.stderr,
            )
            return 1
        if ask is not None and not ask(job):
            print("not cancelled")
            return 1
        answer = await api.cancel(job_id)
    await _record(config, job_id)
    print(f"{job_id}: {answer.status} (was {job.status})")
    return 0


async def _record(config: Config, job_id: str) -> None:
    """Note the cancel in the database, when there is one (the daemon sees the status)."""
    if not store_exists(config.store):
        return
    async with open_configured(config.store, writer=True, lock=False) as store:
        await store.user_cancel(job_id, time.time(), REASON)
