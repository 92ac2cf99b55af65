"""Commands about the watched set: add, remove, list, wait, hooks."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from watcherd.cli.common import color_enabled, emit, load, load_read, read, terminal_width
from watcherd.errors import ConfigError, UsageError, WatcherdError
from watcherd.model import Delivery, JobOverview, validate_job_id
from watcherd.store.opening import store_exists
from watcherd.store.snapshot import Snapshot
from watcherd.views import safe

if TYPE_CHECKING:
    from watcherd.config import Config, ReadConfig
    from watcherd.store.interface import StoreReader
    from watcherd.views.progress import JobView
    from watcherd.watch.waiting import Seen  # the poller stack loads only when `wait` runs

# `list` and `hooks` read through `read` (plain sqlite3 on SQLite); the commands that
# write or poll import anyio, the Store and the logging setup themselves, when they run.


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
    """The IDs, unchanged; a UsageError naming every malformed one."""
    bad = []
    for job_id in job_ids:
        try:
            validate_job_id(job_id)
        except WatcherdError as exc:
            bad.append(str(exc))
    if bad:
        raise UsageError("; ".join(bad))
    return list(job_ids)


def _daemon_note(config: Config, path: Path) -> str:
    """Where the change went and who acts on it; syncs the database if no daemon will."""
    if config.store.url is not None:  # `_share` put it in the shared list already
        from watcherd.durations import format_duration

        within = format_duration(config.store.lease / 4)
        return f"(saved in {path} and in the shared database; the daemons follow within {within})"
    if config.store.path.exists() and Snapshot.daemon_running(config.store.path):
        return f"(saved in {path}; the running daemon picks this up within seconds)"
    if config.store.path.exists():
        import anyio

        anyio.run(_sync_watched, config, backend="asyncio")
    return f"(saved in {path}; no daemon is running: start one with `watcherd run`)"


def _unchanged_note(path: Path) -> str:
    """The note when nothing was added or removed: the jobs file, if any, is as it was."""
    if not path.exists():
        return f"(nothing to change: there is no jobs file at {path})"
    return f"(nothing to change in {path})"


async def _sync_watched(config: Config) -> None:
    """What the daemon does when the jobs file changes: the watched set follows it."""
    from watcherd.config import JobsSource
    from watcherd.store import Store

    async with Store.open(config.store.path, writer=True, lock=False) as store:
        await store.sync_watched(JobsSource(config).entries(), time.time())


def _share(config: Config, add: list[str], remove: list[str]) -> set[str]:
    """On a shared database: this host's jobs synced into the shared list (as its daemon
    would), then `add` watched and `remove` unwatched for every daemon, whichever host's
    jobs file named them. Returns the jobs that were in the shared list before."""

    import anyio

    from watcherd.config import JobsSource
    from watcherd.store.opening import open_configured

    async def go() -> set[str]:
        source = JobsSource(config)
        entries = source.entries()
        notes = dict(entries)
        async with open_configured(config.store, writer=True) as store:
            before = {job.job_id for job in await store.overview()}
            now = time.time()
            await store.sync_watched(entries, now, source=source.name())
            await store.change_watched([(j, notes.get(j)) for j in add], remove, now)
        return before

    return anyio.run(go, backend="asyncio")


def cmd_add(args: argparse.Namespace) -> int:
    """`watcherd add JOB_ID... [--note TEXT]`."""
    from watcherd.jobsfile import add_jobs

    config = load(args)
    ids = _valid_ids(args.job_ids)
    path = _jobs_path(config)
    added = set(add_jobs(path, ids, note=args.note))
    if config.store.url is not None:
        added = set(ids) - _share(config, ids, [])
    for job_id in dict.fromkeys(ids):
        print(f"{job_id}: {'now watched' if job_id in added else 'already watched'}")
    print(_daemon_note(config, path) if added else _unchanged_note(path))
    return 0


def cmd_remove(args: argparse.Namespace) -> int:
    """`watcherd remove JOB_ID...`: stop watching; history stays in the database."""
    from watcherd.jobsfile import remove_jobs

    config = load(args)
    ids = _valid_ids(args.job_ids)
    path = _jobs_path(config)
    removed = set(remove_jobs(path, ids))
    if config.store.url is not None:
        removed = set(ids) & _share(config, [], ids)
    for job_id in dict.fromkeys(ids):
        print(f"{job_id}: {'no longer watched' if job_id in removed else 'was not watched'}")
    inline = sorted(set(ids) & set(config.jobs.ids))
    if inline:
        print(
            f"note: {', '.join(inline)} also listed in jobs.ids of {config.source}; "
            "remove them there too",
            file=sys.stderr,
        )
    print(_daemon_note(config, path) if removed else _unchanged_note(path))
    if removed and store_exists(config.store):
        print("history stays in the database: `watcherd list --all` still shows it")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """`watcherd list [--all] [--json]`."""
    from watcherd.views.listing import list_json, render_list

    config = load_read(args)
    jobs = _overview(config, args.all)
    if args.json:
        print(json.dumps(list_json(jobs, now=time.time()), indent=2))
    elif not jobs:
        print(_no_jobs_hint(config))
    else:
        color = color_enabled()
        emit(render_list(jobs, now=time.time(), color=color, width=terminal_width()), color=color)
    return 0


def _no_jobs_hint(config: ReadConfig) -> str:
    """What a newcomer does next when `list` has nothing to show."""

    from watcherd.config import JobsSource

    configured = len(JobsSource(config).entries())
    if not configured:
        return "No jobs yet: add one with `watcherd add ft-...`, then run `watcherd run`."
    return f"{configured} job(s) configured, none polled yet: start the daemon with `watcherd run`."


def _overview(config: ReadConfig, everything: bool) -> list[JobOverview]:
    if not store_exists(config.store):  # nothing recorded yet: an empty list, not an error
        return []

    async def overview(store: StoreReader) -> list[JobOverview]:
        return await store.overview(include_unwatched=everything)

    return read(config, overview)


def cmd_hooks(args: argparse.Namespace) -> int:
    """`watcherd hooks [JOB_ID]` and `watcherd hooks retry DELIVERY_ID`."""
    from watcherd.views.hooks import deliveries_json, render_deliveries

    config = load_read(args)
    if args.args[:1] == ["retry"]:
        if len(args.args) != 2:
            raise UsageError("usage: watcherd hooks retry DELIVERY_ID")
        import anyio

        return anyio.run(_retry, config, args.args[1], backend="asyncio")
    if len(args.args) > 1:
        raise UsageError("give at most one JOB_ID (or `retry DELIVERY_ID`)")
    job_id = _valid_ids(args.args)[0] if args.args else None
    deliveries = _deliveries(config, job_id)
    if args.json:
        print(json.dumps(deliveries_json(deliveries), indent=2))
    elif not deliveries:
        print("no hook deliveries yet")
    else:
        color = color_enabled()
        page = render_deliveries(deliveries, now=time.time(), color=color, width=terminal_width())
        emit(page, color=color)
    return 0


def _deliveries(config: ReadConfig, job_id: str | None) -> list[Delivery]:
    if not store_exists(config.store):
        return []

    async def deliveries(store: StoreReader) -> list[Delivery]:
        return await store.deliveries(job_id)

    return read(config, deliveries)


async def _retry(config: ReadConfig, delivery_id: str) -> int:
    from watcherd.store.opening import open_configured

    path = config.store.path
    if not store_exists(config.store):
        raise UsageError(f"no hook delivery with id {delivery_id!r}: {path} does not exist yet")
    async with open_configured(config.store, writer=True, lock=False) as store:
        known = {d.id for d in await store.deliveries()}
        ok = await store.requeue(delivery_id, time.time())
    if delivery_id not in known:
        raise UsageError(f"no hook delivery with id {delivery_id!r} (see `watcherd hooks`)")
    if not ok:
        raise WatcherdError(f"{delivery_id} is being delivered right now; retry once it ends")
    who = "the daemon delivers it within seconds"
    if config.store.url is None and not Snapshot.daemon_running(path):
        who = "no daemon is running: `watcherd run` delivers it"
    print(f"{delivery_id}: queued again ({who})")
    return 0


class WaitView:
    """`wait`'s progress: live lines redrawn in place on a terminal; off one, a plain line
    on `log` (stderr) when a job changes, so stdout keeps only the final statuses."""

    def __init__(self, out: TextIO, log: TextIO) -> None:
        self.out = out
        self.log = log
        self.tty = out.isatty()
        self.lines = 0
        self.last: dict[str, str] = {}

    def draw(self, seen: list[Seen]) -> None:
        """Show the jobs as last read (called by `wait_for` after every look)."""
        from watcherd.views.progress import JobView, plain_line

        views = [JobView(job, raw, epoch) for job, raw, epoch in seen]
        if self.tty:
            self._redraw(views)
            return
        for view in views:
            line = plain_line(view)
            if self.last.get(view.job.job_id) != line:
                self.last[view.job.job_id] = line
                print(line, file=self.log, flush=True)

    def _redraw(self, views: list[JobView]) -> None:
        from watcherd.views.progress import live_line

        now, width, color = time.time(), terminal_width(), color_enabled(self.out)
        text = "\n".join(live_line(v, now=now, color=color, width=width) for v in views)
        if self.lines:
            self.out.write(f"\x1b[{self.lines}F\x1b[J")
        self.out.write(text + "\n")
        self.out.flush()
        self.lines = len(views)


def cmd_wait(args: argparse.Namespace) -> int:
    """`watcherd wait JOB_ID... [--timeout DURATION]`: 0 if all completed, 1 otherwise."""
    import dataclasses

    import anyio

    from watcherd.durations import format_duration
    from watcherd.logs import configure_logging
    from watcherd.model import is_settled
    from watcherd.watch.waiting import wait_for

    config = load(args)
    ids = list(dict.fromkeys(_valid_ids(args.job_ids)))
    if config.log.level == "info":  # wait logs polling trouble only, unless debug is asked for
        configure_logging(dataclasses.replace(config.log, level="warning"))
    else:
        configure_logging(config.log)
    show = WaitView(sys.stdout, sys.stderr)
    statuses = anyio.run(wait_for, config, ids, args.timeout, show.draw, backend="asyncio")
    for job_id in ids:
        emit(f"{job_id}: {safe(statuses[job_id] or 'unknown')}")
    waiting = [j for j in ids if not is_settled(statuses[j])]
    if waiting:
        print(
            f"watcherd wait: gave up after {format_duration(args.timeout or 0)};"
            f" not finished: {', '.join(waiting)}",
            file=sys.stderr,
        )
    return 0 if all(statuses[j] == "completed" for j in ids) else 1
