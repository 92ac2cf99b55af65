"""Commands about the watched set: add, remove, list, wait, hooks."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import anyio

from watcherd.cli.common import color_enabled, load, reader, terminal_width
from watcherd.config import Config
from watcherd.durations import format_duration
from watcherd.errors import ConfigError, UsageError, WatcherdError
from watcherd.jobsfile import add_jobs, remove_jobs
from watcherd.logs import configure_logging
from watcherd.model import Delivery, JobOverview, validate_job_id
from watcherd.views.hooks import deliveries_json, render_deliveries
from watcherd.views.listing import list_json, render_list


def _jobs_path(config: Config) -> Path:
    """The jobs file that `add` and `remove` edit."""
    if config.jobs.file is None:
        raise ConfigError(
            "no jobs file configured; `add` and `remove` need one",
            path=str(config.source),
            key="jobs.file",
        )
    return config.jobs.file


def _valid_ids(job_ids: list[str]) -> list[str]:
    try:
        return [validate_job_id(j) for j in job_ids]
    except WatcherdError as exc:
        raise UsageError(str(exc)) from exc


def cmd_add(args: argparse.Namespace) -> int:
    """`watcherd add JOB_ID... [--note TEXT]`."""
    config = load(args)
    ids = _valid_ids(args.job_ids)
    path = _jobs_path(config)
    added = add_jobs(path, ids, note=args.note)
    for job_id in ids:
        print(f"{job_id}: {'now watched' if job_id in added else 'already watched'}")
    print(f"(saved in {path}; a running daemon picks this up within seconds)")
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    """`watcherd remove JOB_ID...`: stop watching; history stays in the database."""
    config = load(args)
    ids = _valid_ids(args.job_ids)
    path = _jobs_path(config)
    removed = remove_jobs(path, ids)
    for job_id in ids:
        print(f"{job_id}: {'no longer watched' if job_id in removed else 'was not watched'}")
    inline = sorted(set(ids) & set(config.jobs.ids))
    if inline:
        print(
            f"note: {', '.join(inline)} also listed in jobs.ids of {config.source}", file=sys.stderr
        )
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """`watcherd list [--all] [--json]`."""
    config = load(args)
    jobs = anyio.run(_overview, config, args.all, backend="asyncio")
    if args.json:
        print(json.dumps(list_json(jobs), indent=2))
    elif not jobs:
        print("no jobs yet: add one with `watcherd add ft-...`")
    else:
        print(render_list(jobs, now=time.time(), color=color_enabled(), width=terminal_width()))
    return 0


async def _overview(config: Config, everything: bool) -> list[JobOverview]:
    async with reader(config) as store:
        return await store.overview(include_unwatched=everything)


def cmd_hooks(args: argparse.Namespace) -> int:
    """`watcherd hooks [JOB_ID]` and `watcherd hooks retry DELIVERY_ID`."""
    config = load(args)
    if args.args[:1] == ["retry"]:
        if len(args.args) != 2:
            raise UsageError("usage: watcherd hooks retry DELIVERY_ID")
        return anyio.run(_retry, config, args.args[1], backend="asyncio")
    if len(args.args) > 1:
        raise UsageError("give at most one JOB_ID (or `retry DELIVERY_ID`)")
    job_id = _valid_ids(args.args)[0] if args.args else None
    deliveries = anyio.run(_deliveries, config, job_id, backend="asyncio")
    if args.json:
        print(json.dumps(deliveries_json(deliveries), indent=2))
    elif not deliveries:
        print("no hook deliveries yet")
    else:
        print(render_deliveries(deliveries, now=time.time(), color=color_enabled()))
    return 0


async def _deliveries(config: Config, job_id: str | None) -> list[Delivery]:
    async with reader(config) as store:
        return await store.deliveries(job_id)


async def _retry(config: Config, delivery_id: str) -> int:
    from watcherd.store import Store

    async with Store.open(config.store.path, writer=True, lock=False) as store:
        ok = await store.requeue(delivery_id, time.time())
    if not ok:
        raise UsageError(f"no hook delivery with id {delivery_id!r} (see `watcherd hooks`)")
    print(f"{delivery_id}: queued again; the daemon delivers it within seconds")
    return 0


def cmd_wait(args: argparse.Namespace) -> int:
    """`watcherd wait JOB_ID... [--timeout DURATION]`: 0 if all completed, 1 otherwise."""
    from watcherd.waiting import settled, wait_for

    config = load(args)
    ids = list(dict.fromkeys(_valid_ids(args.job_ids)))
    if config.log.level == "info":  # wait logs polling trouble only, unless debug is asked for
        configure_logging(dataclasses.replace(config.log, level="warning"))
    else:
        configure_logging(config.log)
    statuses = anyio.run(wait_for, config, ids, args.timeout, backend="asyncio")
    for job_id in ids:
        print(f"{job_id}: {statuses[job_id] or 'unknown'}")
    waiting = [j for j in ids if not settled(statuses[j])]
    if waiting:
        print(
            f"watcherd wait: gave up after {format_duration(args.timeout or 0)};"
            f" not finished: {', '.join(waiting)}",
            file=sys.stderr,
        )
    return 0 if all(statuses[j] == "completed" for j in ids) else 1
