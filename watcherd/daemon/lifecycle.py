"""The daemon: one task group for its lifetime, holding the poller and the dispatcher.

`run_daemon` assembles everything a running daemon uses in one place (`open_runtime`:
the store, the two HTTP clients, the API client, the poller, the dispatcher and the
status reporter) and hands it, complete, to a `Daemon`.

SIGTERM and SIGINT stop it gracefully (running hooks get a grace period, then are
killed and recorded as failed so they retry); a second SIGTERM or SIGINT during that
grace stops at once. SIGHUP reloads a validated config and keeps the old one if the
new one is invalid; the jobs file is watched so that `watcherd add`/`remove` take
effect within seconds (`watcherd.daemon.jobswatch`: a jobs file that goes missing or
bad keeps the previous job list).

A stop never waits on a long database call: STORE_STOP_GRACE after the task group is
cancelled (for whatever reason), a call still running is cut short and rolls back.
A database that cannot be written (disk full, I/O error, the files deleted) stops
the daemon with one `daemon.store_failed` line and StoreUnusableError (exit 74).
"""

from __future__ import annotations

import dataclasses
import signal
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TypeVar

import anyio
import anyio.abc
import httpx
import structlog

from watcherd.api.client import ApiClient
from watcherd.config import Config, JobsSource, load_config
from watcherd.daemon.jobswatch import FILE_STATE_PREFIX, JobsFileWatch
from watcherd.daemon.prometheus import bind, render, serve
from watcherd.daemon.status import StatusReporter, status_line
from watcherd.errors import (
    ConfigError,
    StoreError,
    StoreInterruptedError,
    StoreUnusableError,
    WatcherdError,
)
from watcherd.jobsfile import JobEntry
from watcherd.logs import configure_logging
from watcherd.model import SETTLED_DELIVERIES, DeliveryState
from watcherd.store import watchlist
from watcherd.store.inline import settle_switch_interval
from watcherd.store.interface import StoreApi
from watcherd.store.opening import describe, open_configured
from watcherd.systemd import Notifier
from watcherd.watch.budget import CHECK_EVERY, BudgetWatch, spend_now
from watcherd.watch.dispatcher import Dispatcher
from watcherd.watch.poller import Poller
from watcherd.watch.wiring import api_host, build_api, restore_pause, saved_gate

log = structlog.get_logger("watcherd.daemon")

#: Seconds running hooks get to finish on a graceful stop before they are killed.
STOP_GRACE = 10.0
#: The signals the running daemon handles (ignored once its loop has ended).
HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
#: How often the jobs file is checked for changes.
JOBS_FILE_CHECK = 1.0
#: How often `run --until-done` checks whether everything is settled.
DONE_CHECK = 0.2
#: Seconds a database call may still run once a stop began, before it is cut short.
STORE_STOP_GRACE = 1.0

Wall = Callable[[], float]
Socket = anyio.abc.Listener[anyio.abc.SocketStream]


class Mode(Enum):
    """How long `watcherd run` runs: forever, one round (`--once`), or `--until-done`."""

    FOREVER = "forever"
    ONCE = "once"
    UNTIL_DONE = "until-done"


@dataclass(frozen=True, slots=True)
class Runtime:
    """Everything a running daemon uses, open and wired together."""

    store: StoreApi
    api_http: httpx.AsyncClient
    poller: Poller
    dispatcher: Dispatcher
    reporter: StatusReporter
    budget: BudgetWatch


@asynccontextmanager
async def open_runtime(
    config: Config, notifier: Notifier, wall: Wall = time.time
) -> AsyncIterator[Runtime]:
    """Open the store and HTTP clients and build the parts on them; close all on exit."""
    async with (
        open_configured(config.store, writer=True) as store,
        ApiClient.http_client(config.api) as api_http,
        httpx.AsyncClient(follow_redirects=False) as hooks_http,
    ):
        shared = config.store.url is not None
        api = build_api(api_http, config, gate=saved_gate(store, api_host(config), shared=shared))
        dispatcher = Dispatcher(store, hooks_http, config, wall=wall)
        poller = Poller(store, api, config, on_deliveries=dispatcher.wake, wall=wall)
        reporter = StatusReporter(store, poller, notifier, wall=wall)
        budget = BudgetWatch(store, on_deliveries=dispatcher.wake, wall=wall)
        yield Runtime(store, api_http, poller, dispatcher, reporter, budget)


async def run_daemon(
    config_path: Path, config: Config, notifier: Notifier, mode: Mode, wall: Wall = time.time
) -> int:
    """`watcherd run`: run until stopped (or the mode's goal is met); the exit code.

    StoreUnusableError (disk full, I/O error, database deleted) is logged as one
    `daemon.store_failed` line and raised alone, out of any task group.
    """
    settle_switch_interval()  # the loop and the database thread: see `store.inline`
    try:
        async with open_runtime(config, notifier, wall) as runtime:
            daemon = Daemon(config_path, config, runtime, notifier, wall)
            return await daemon.run(mode)
    except (StoreUnusableError, BaseExceptionGroup) as exc:
        failed = _first(exc, StoreUnusableError)
        if failed is None:
            raise
        log.error("daemon.store_failed", path=failed.path, error=failed.reason)
        raise failed from None


class Daemon:
    """A running daemon's lifetime: start-up, signals, reload, the jobs file, the stop."""

    def __init__(
        self, config_path: Path, config: Config, rt: Runtime, notifier: Notifier, wall: Wall
    ) -> None:
        self.config_path = config_path
        self.config = config
        self.rt = rt
        self.notifier = notifier
        self.wall = wall
        self.started_at = wall()
        self.exit_code = 0
        self._jobs_file = JobsFileWatch()
        self._stopping = False
        self._reloading = anyio.Lock()

    async def run(self, mode: Mode) -> int:
        """Start up, then run in `mode`; return the exit code."""
        await restore_pause(self.rt.poller.api.gate, self.rt.store, self.config, self.wall())
        recovered = await self.rt.store.recover_interrupted(self.wall())
        if recovered:
            log.warning("hook.recovered", deliveries=recovered)
        await self._sync_jobs()
        log.info(
            "daemon.started",
            jobs=len(self.rt.poller.jobs),
            mode=mode.value,
            database=describe(self.config.store),
        )
        if mode is Mode.ONCE:
            return await self._run_once()
        return await self._run_loop(mode)

    async def _run_once(self) -> int:
        self.notifier.ready()
        stats = self.rt.poller.stats
        before = (stats.polls, stats.errors)
        await self.rt.poller.poll_once()
        await self._check_budget()
        await self.rt.dispatcher.drain()
        await self.rt.reporter.publish()
        self._notify_stopping()
        await self._save_pause()
        return self._once_code(*before)

    def _once_code(self, polls: int, errors: int) -> int:
        """1 when the round achieved nothing (the key refused, or not one job polled of
        those it tried), so that cron notices; 0 otherwise (a job's failure is logged)."""
        stats = self.rt.poller.stats
        reason = stats.auth_error
        if reason is None and stats.errors > errors and stats.polls == polls:
            reason = "no job could be polled"
        if reason is None:
            return 0
        log.error("daemon.once_failed", reason=reason, exit_code=1)
        return 1

    async def _run_loop(self, mode: Mode) -> int:
        address = self.config.metrics_listen
        listener = await bind(address) if address is not None else None
        try:
            await self._guarded(mode, listener)
        except BaseExceptionGroup as group:
            _interrupted, rest = group.split(StoreInterruptedError)
            if rest is not None:
                raise rest from None
            log.warning("daemon.store_call_cut", hint="a database call was cut short by the stop")
        self._notify_stopping()
        await self._save_pause()
        log.info("daemon.stopped", exit_code=self.exit_code, polls=self.rt.poller.stats.polls)
        return self.exit_code

    async def _save_pause(self) -> None:
        """A pause whose save failed or was cut by the stop is saved now."""
        with anyio.CancelScope(shield=True), anyio.move_on_after(STOP_GRACE):
            await self.rt.poller.api.gate.flush()

    async def _guarded(self, mode: Mode, listener: Socket | None) -> None:
        """The lifetime task group, watched: once it is cancelled, long store calls are cut.

        The watch runs beside the group, not in it, so that it outlives the group's
        cancellation (a stop, the goal of `--until-done` met, or a task's crash).
        """
        ending = anyio.Event()
        async with anyio.create_task_group() as watch:
            watch.start_soon(self._cut_store_calls, ending)
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_set_when_cancelled, ending)
                    await self._tasks(tg, mode, listener)
            finally:
                watch.cancel_scope.cancel()

    async def _tasks(self, tg: anyio.abc.TaskGroup, mode: Mode, listener: Socket | None) -> None:
        """Start the daemon's tasks in `tg`, the task group of its lifetime."""
        await tg.start(self._signals, tg)
        if listener is not None:
            tg.start_soon(serve, listener, self.metrics_text)
            log.info("metrics.listening", address=str(self.config.metrics_listen))
        self.notifier.ready(status_line(await self.rt.reporter.refresh()))
        tg.start_soon(self._watch_jobs_file)
        tg.start_soon(self._status_loop)
        tg.start_soon(self.rt.poller.run)
        tg.start_soon(self.rt.dispatcher.run)
        tg.start_soon(self._budget_loop)
        if mode is Mode.UNTIL_DONE:
            tg.start_soon(self._until_done, tg)

    async def _cut_store_calls(self, ending: anyio.Event) -> None:
        await ending.wait()
        await self.rt.store.cut_long_calls(STORE_STOP_GRACE)

    # -- signals and stopping -----------------------------------------------

    async def _signals(
        self, tg: anyio.abc.TaskGroup, *, task_status: anyio.abc.TaskStatus[None]
    ) -> None:
        """SIGHUP reloads; SIGTERM/SIGINT stop gracefully, and a second one at once.

        Once the loop ends, closing the receiver puts the default handlers back, under
        which a late stop request would kill the exiting process (-15, not 0): the
        daemon is on its way out already, so from then on the three are ignored.
        """
        try:
            with anyio.open_signal_receiver(*HANDLED_SIGNALS) as signals:
                task_status.started()
                async for signum in signals:
                    if signum == signal.SIGHUP:
                        tg.start_soon(self.reload)  # never holds up a SIGTERM behind it
                    elif not self._stopping:
                        log.info("daemon.stopping", signal=signal.Signals(signum).name)
                        tg.start_soon(self.stop, tg)
                    else:
                        log.warning("daemon.stop_forced", signal=signal.Signals(signum).name)
                        tg.cancel_scope.cancel()
        finally:
            for signum in HANDLED_SIGNALS:
                signal.signal(signum, signal.SIG_IGN)

    async def stop(self, tg: anyio.abc.TaskGroup) -> None:
        """No new API request; running hooks and open requests get a grace; then cancel.

        An open request is let finish so that a 429 it meets is read and its pause
        saved: the next start keeps it.
        """
        self._notify_stopping()
        with anyio.move_on_after(STOP_GRACE):
            async with anyio.create_task_group() as grace:
                grace.start_soon(self.rt.poller.api.gate.drain)
                await self.rt.dispatcher.wait_idle()
        tg.cancel_scope.cancel()

    def _notify_stopping(self) -> None:
        """Send STOPPING=1, once."""
        if not self._stopping:
            self._stopping = True
            self.notifier.stopping()

    async def _until_done(self, tg: anyio.abc.TaskGroup) -> None:
        """`--until-done`: stop once every job is settled and no delivery is outstanding.

        Exit 1 if a delivery is dead or a finished job's metrics could not be fetched.
        """
        while True:
            await anyio.sleep(DONE_CHECK)
            if not self.rt.poller.settled():
                continue
            counts = await self.rt.store.delivery_counts()
            if any(counts.get(s, 0) for s in DeliveryState if s not in SETTLED_DELIVERIES):
                continue
            dead = counts.get(DeliveryState.DEAD, 0)
            incomplete = self.rt.poller.metrics_incomplete()
            self.exit_code = 1 if dead or incomplete else 0
            log.info(
                "daemon.all_done",
                jobs=len(self.rt.poller.jobs),
                dead_hooks=dead,
                metrics_incomplete=incomplete,
            )
            tg.cancel_scope.cancel()
            return

    # -- reload and the jobs file -------------------------------------------

    async def reload(self) -> None:
        """SIGHUP: load and validate the config; keep the old one if the new one is bad."""
        async with self._reloading:
            await self._reload()

    async def _reload(self) -> None:
        self.notifier.reloading()
        try:
            config = load_config(self.config_path)
            api = self._api_for(config)
        except ConfigError as exc:
            log.error(
                "config.reload_failed",
                error=str(exc),
                path=exc.path,
                line=exc.line,
                key=exc.key,
                kept="previous configuration",
            )
            self.notifier.ready()
            return
        self._warn_restart_needed(config)
        configure_logging(config.log)
        self.config = config
        self.rt.poller.reconfigure(config, api)
        await restore_pause(self.rt.poller.api.gate, self.rt.store, config, self.wall())
        self.rt.poller.pause_changed()
        self.rt.dispatcher.reconfigure(config)
        self._jobs_file.reset()
        await self._sync_jobs_logged()
        log.info("config.reloaded", path=str(self.config_path), jobs=len(self.rt.poller.jobs))
        self.notifier.ready()

    def _api_for(self, config: Config) -> ApiClient | None:
        """A new API client if the `api:` settings changed; the host's pause carries over."""
        if config.api == self.config.api:
            return None
        gate = self.rt.poller.api.gate
        if api_host(config) != api_host(self.config):
            shared = config.store.url is not None
            gate = saved_gate(self.rt.store, api_host(config), shared=shared)
        return build_api(self.rt.api_http, config, gate=gate)

    def _warn_restart_needed(self, config: Config) -> None:
        """Settings a reload cannot change are kept, with a warning."""
        if config.store != self.config.store:
            log.warning("config.store_path_changed", hint="restart watcherd to change store.path")
        if config.metrics_listen != self.config.metrics_listen:
            log.warning("config.metrics_listen_changed", hint="restart watcherd to change it")

    async def _watch_jobs_file(self) -> None:
        """Follow the jobs file, looking every JOBS_FILE_CHECK seconds."""
        while True:
            await anyio.sleep(JOBS_FILE_CHECK)
            await self._sync_jobs_logged()

    async def _sync_jobs_logged(self) -> None:
        """`_sync_jobs`; a failure keeps the job list, logged once per content and error."""
        try:
            await self._sync_jobs()
        except StoreError:
            raise  # the database's trouble, not the jobs file's
        except WatcherdError as exc:
            if self._jobs_file.failed(exc):
                log.error("jobs.file_invalid", error=str(exc), kept="previous job list")

    async def _sync_jobs(self) -> None:
        """Bring the watched set in step with the jobs file and config, if either changed."""
        path = self.config.jobs.file
        if not self._jobs_file.changed(path):
            return
        from_file = await self._jobs_file.entries(path, self._stored_entries)
        source = JobsSource(self.config)
        entries = source.merge(from_file)
        poller = self.rt.poller
        await self.rt.store.sync_watched(entries, self.wall(), source=source.name())
        if path is not None:
            saved = watchlist.encode([(entry.job_id, entry.note) for entry in from_file])
            await self.rt.store.set_state(FILE_STATE_PREFIX + source.name(), saved)
        self._jobs_file.applied()
        before = set(poller.jobs)
        await poller.load_jobs()
        added = sorted(set(poller.jobs) - before)
        if added and before:
            log.info("jobs.added", job_ids=added)
        poller.wake()

    async def _stored_entries(self) -> list[JobEntry]:
        """For a jobs file already missing at start-up: what it last gave, as saved; or,
        in a database from before that was saved, the watched set as stored or, on a
        shared database, what this host's jobs last added to it."""
        name = JobsSource(self.config).name()
        saved = await self.rt.store.get_state(FILE_STATE_PREFIX + name)
        if saved is None and self.config.store.url is None:
            return [JobEntry(job.job_id, job.note) for job in await self.rt.store.overview()]
        if saved is None:
            saved = await self.rt.store.get_state(watchlist.SOURCE_PREFIX + name)
        return [JobEntry(job_id, note) for job_id, note in watchlist.decode(saved)]

    # -- status -------------------------------------------------------------

    async def _status_loop(self) -> None:
        """STATUS= and the watchdog on time, even while the database is slow or locked.

        The heartbeat and the state `health` reads are written by a task of their own,
        one at a time; the database files are checked on every turn.
        """
        reporter = self.rt.reporter
        async with anyio.create_task_group() as tg:
            while True:
                self.rt.store.check_files()
                reporter.announce()
                if not reporter.persisting:
                    tg.start_soon(reporter.persist)
                await anyio.sleep(reporter.every)

    async def metrics_text(self) -> str:
        """The Prometheus text for a scrape, with fresh delivery counts and spend.

        While another process holds the database's lock, the last counts and no
        spend: a scrape has a deadline, the lock may not.
        """
        reporter = self.rt.reporter
        locked = self.rt.store.lock_wait_since is not None
        snap = reporter.snapshot() if locked else await reporter.refresh()
        if not locked:
            spend = await spend_now(self.rt.store, snap.taken_at)
            snap = dataclasses.replace(snap, spend=spend)
        return render(snap, started_at=self.started_at)

    # -- the budget ---------------------------------------------------------

    async def _budget_loop(self) -> None:
        """Check the budget every minute (a period fires once: see `watch.budget`)."""
        while True:
            await self._check_budget()
            await anyio.sleep(CHECK_EVERY)

    async def _check_budget(self) -> None:
        try:
            await self.rt.budget.check(self.config)
        except WatcherdError as exc:
            log.error("budget.check_failed", error=str(exc))


async def _set_when_cancelled(event: anyio.Event) -> None:
    """Wait for the task group's cancellation (a stop, the goal met, a crash); then set."""
    try:
        await anyio.sleep_forever()
    finally:
        event.set()


E = TypeVar("E", bound=BaseException)


def _first(exc: BaseException, kind: type[E]) -> E | None:
    """The first `kind` in `exc` or, for an exception group, among its leaves."""
    if isinstance(exc, kind):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _first(inner, kind)
            if found is not None:
                return found
    return None
