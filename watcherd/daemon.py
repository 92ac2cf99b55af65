"""The daemon: one task group for its lifetime, holding the poller and the dispatcher.

SIGTERM and SIGINT stop it gracefully (running hooks get a grace period, then are
killed and recorded as failed so they retry); SIGHUP reloads a validated config and
keeps the old one if the new one is invalid; the jobs file is watched so that
`watcherd add`/`remove` take effect within seconds.

A stop never waits on a long database call: STORE_STOP_GRACE after the task group is
cancelled (for whatever reason), a call still running is cut short and rolls back.
A database that cannot be written (disk full, I/O error, the files deleted) stops
the daemon with one `daemon.store_failed` line and StoreUnusableError (exit 74).
"""

from __future__ import annotations

import signal
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TypeVar

import anyio
import anyio.abc
import httpx
import structlog

from watcherd.api import ApiClient
from watcherd.config import Config, load_config
from watcherd.dispatcher import Dispatcher
from watcherd.errors import (
    ConfigError,
    StoreError,
    StoreInterruptedError,
    StoreUnusableError,
    WatcherdError,
)
from watcherd.jobsfile import file_signature, read_jobs
from watcherd.logs import configure_logging
from watcherd.model import validate_job_id
from watcherd.poller import Poller
from watcherd.promexport import Listen, bind, parse_listen, render, serve
from watcherd.status import StatusReporter, status_line
from watcherd.store import Store
from watcherd.systemd import Notifier

log = structlog.get_logger("watcherd.daemon")

Socket = anyio.abc.Listener[anyio.abc.SocketStream]

#: Seconds running hooks get to finish on a graceful stop before they are killed.
STOP_GRACE = 10.0
#: How often the jobs file is checked for changes.
JOBS_FILE_CHECK = 1.0
#: Seconds a database call may still run once a stop began, before it is cut short.
STORE_STOP_GRACE = 1.0
OUTSTANDING = ("pending", "running", "failed")


class Mode(Enum):
    FOREVER = "forever"
    ONCE = "once"
    UNTIL_DONE = "until-done"


@dataclass(frozen=True, slots=True)
class JobsSource:
    """Where the watched set comes from: the jobs file and the config's inline IDs."""

    config: Config

    def entries(self) -> list[tuple[str, str | None]]:
        """(job_id, note) pairs, the file's first, inline IDs after; duplicates dropped."""
        found: dict[str, str | None] = {}
        if self.config.jobs.file is not None:
            for entry in read_jobs(self.config.jobs.file):
                found.setdefault(entry.job_id, entry.note)
        for job_id in self.config.jobs.ids:
            found.setdefault(validate_job_id(job_id), None)
        return list(found.items())


def build_api(http: httpx.AsyncClient, config: Config) -> ApiClient:
    """An API client for this config; reads the API key now.

    A missing or unusable key is a ConfigError naming the config file and `api.api_key`.
    """
    try:
        key = config.api.api_key.resolve()
    except ConfigError as exc:
        if exc.key:
            raise
        source = str(config.source) if config.source else None
        hint = "set it, or name another source with api_key_env / api_key_file"
        raise ConfigError(f"{exc.message}; {hint}", path=source, key="api.api_key") from exc
    return ApiClient.from_config(http, config.api, key)


def metrics_address(config: Config) -> Listen | None:
    """Where to serve Prometheus metrics; ConfigError for a non-loopback address."""
    if config.metrics_listen is None:
        return None
    try:
        return parse_listen(config.metrics_listen)
    except ConfigError as exc:
        raise ConfigError(exc.message, path=str(config.source), key=exc.key) from None


class Daemon:
    """`watcherd run`: owns the store, the HTTP client, the poller and the dispatcher."""

    def __init__(self, config_path: Path, config: Config, notifier: Notifier) -> None:
        self.config_path = config_path
        self.config = config
        self.notifier = notifier
        self._jobs_signature: object = None
        self._jobs_synced = False
        self._stopping = False
        self._reloading = anyio.Lock()
        self.started_at = time.time()

    async def run(self, mode: Mode) -> int:
        """Run until stopped (or until the mode's goal is met); return the exit code.

        StoreUnusableError (disk full, I/O error, database deleted) is logged as one
        `daemon.store_failed` line and raised alone, out of any task group.
        """
        try:
            return await self._run_store(mode)
        except (StoreUnusableError, BaseExceptionGroup) as exc:
            failed = _first(exc, StoreUnusableError)
            if failed is None:
                raise
            log.error("daemon.store_failed", path=failed.path, error=failed.reason)
            raise failed from None

    async def _run_store(self, mode: Mode) -> int:
        metrics_address(self.config)
        async with (
            Store.open(self.config.store.path, writer=True) as store,
            ApiClient.http_client(self.config.api) as api_http,
            httpx.AsyncClient(follow_redirects=False) as hooks_http,
        ):
            self.api_http = api_http
            return await self._run(store, hooks_http, mode)

    async def _run(self, store: Store, http: httpx.AsyncClient, mode: Mode) -> int:
        api = build_api(self.api_http, self.config)
        await self._restore_pauses(store, api)
        dispatcher = Dispatcher(store, http, self.config)
        poller = Poller(store, api, self.config, on_deliveries=dispatcher.wake)
        self.store, self.http, self.poller, self.dispatcher = store, http, poller, dispatcher
        self.reporter = StatusReporter(store, poller, self.notifier)
        recovered = await store.recover_interrupted(time.time())
        if recovered:
            log.warning("hook.recovered", deliveries=recovered)
        await self._sync_jobs()
        log.info(
            "daemon.started",
            jobs=len(poller.jobs),
            mode=mode.value,
            database=str(self.config.store.path),
        )
        if mode is Mode.ONCE:
            return await self._run_once()
        return await self._run_loop(mode)

    async def _run_once(self) -> int:
        self.notifier.ready()
        await self.poller.poll_once()
        await self.dispatcher.drain()
        await self._publish_status()
        self._notify_stopping()
        return 0

    async def _run_loop(self, mode: Mode) -> int:
        self.exit_code = 0
        address = metrics_address(self.config)
        listener = await bind(address) if address is not None else None
        try:
            await self._guarded(mode, listener, address)
        except BaseExceptionGroup as group:
            _interrupted, rest = group.split(StoreInterruptedError)
            if rest is not None:
                raise rest from None
            log.warning("daemon.store_call_cut", hint="a database call was cut short by the stop")
        self._notify_stopping()
        log.info("daemon.stopped", exit_code=self.exit_code, polls=self.poller.stats.polls)
        return self.exit_code

    async def _tasks(
        self, tg: anyio.abc.TaskGroup, mode: Mode, listener: Socket | None, address: Listen | None
    ) -> None:
        """Start the daemon's tasks in `tg`, the task group of its lifetime."""
        self._tg = tg
        await tg.start(self._signals, tg)
        if listener is not None:
            tg.start_soon(serve, listener, self.metrics_text)
            log.info("metrics.listening", address=str(address))
        self.notifier.ready(status_line(await self.reporter.refresh()))
        tg.start_soon(self._watch_jobs_file)
        tg.start_soon(self._status_loop)
        tg.start_soon(self.poller.run)
        tg.start_soon(self.dispatcher.run)
        if mode is Mode.UNTIL_DONE:
            tg.start_soon(self._until_done, tg)

    async def _guarded(self, mode: Mode, listener: Socket | None, address: Listen | None) -> None:
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
                    await self._tasks(tg, mode, listener, address)
            finally:
                watch.cancel_scope.cancel()

    async def _cut_store_calls(self, ending: anyio.Event) -> None:
        await ending.wait()
        await self.store.cut_long_calls(STORE_STOP_GRACE)

    # -- lifecycle -------------------------------------------------------

    async def _signals(
        self, tg: anyio.abc.TaskGroup, *, task_status: anyio.abc.TaskStatus[None]
    ) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            task_status.started()
            async for signum in signals:
                if signum == signal.SIGHUP:
                    tg.start_soon(self.reload)  # never holds up a SIGTERM behind it
                    continue
                log.info("daemon.stopping", signal=signal.Signals(signum).name)
                await self.stop(tg)
                return

    async def stop(self, tg: anyio.abc.TaskGroup) -> None:
        """Give running hooks a grace period, then cancel everything."""
        self._notify_stopping()
        with anyio.move_on_after(STOP_GRACE):
            await self.dispatcher.wait_idle()
        tg.cancel_scope.cancel()

    def _notify_stopping(self) -> None:
        """Send STOPPING=1, once."""
        if not self._stopping:
            self._stopping = True
            self.notifier.stopping()

    async def reload(self) -> None:
        """SIGHUP: load and validate the config; keep the old one if the new one is bad."""
        async with self._reloading:
            await self._reload()

    async def _reload(self) -> None:
        self.notifier.reloading()
        try:
            config = load_config(self.config_path)
            metrics_address(config)
            api = build_api(self.api_http, config) if config.api != self.config.api else None
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
        if config.store.path != self.config.store.path:
            log.warning("config.store_path_changed", hint="restart watcherd to change store.path")
        if config.metrics_listen != self.config.metrics_listen:
            log.warning("config.metrics_listen_changed", hint="restart watcherd to change it")
        configure_logging(config.log)
        self.config = config
        self.poller.reconfigure(config, api)
        self.dispatcher.config = config
        self._jobs_synced = False
        await self._sync_jobs()
        log.info("config.reloaded", path=str(self.config_path), jobs=len(self.poller.jobs))
        self.notifier.ready()

    async def _until_done(self, tg: anyio.abc.TaskGroup) -> None:
        while True:
            await anyio.sleep(0.2)
            if not self.poller.settled():
                continue
            counts = await self.store.delivery_counts()
            if any(counts.get(state, 0) for state in OUTSTANDING):
                continue
            dead = counts.get("dead", 0)
            self.exit_code = 1 if dead else 0
            log.info("daemon.all_done", jobs=len(self.poller.jobs), dead_hooks=dead)
            tg.cancel_scope.cancel()
            return

    # -- jobs file -------------------------------------------------------

    async def _watch_jobs_file(self) -> None:
        while True:
            await anyio.sleep(JOBS_FILE_CHECK)
            try:
                await self._sync_jobs()
            except StoreError:
                raise
            except WatcherdError as exc:
                log.error("jobs.file_invalid", error=str(exc), kept="previous job list")

    async def _sync_jobs(self) -> None:
        """Make the store's watched set follow the jobs file (and inline IDs) if they changed."""
        path = self.config.jobs.file
        signature = file_signature(path) if path is not None else None
        if self._jobs_synced and signature == self._jobs_signature:
            return
        entries = JobsSource(self.config).entries()
        self._jobs_signature, self._jobs_synced = signature, True
        await self.store.sync_watched(entries, time.time())
        before = set(self.poller.jobs)
        await self.poller.load_jobs()
        added = sorted(set(self.poller.jobs) - before)
        if added and before:
            log.info("jobs.added", job_ids=added)
        self.poller.wake()

    async def _restore_pauses(self, store: Store, api: ApiClient) -> None:
        for _host, until in (await store.host_pauses()).items():
            if until > time.time():
                api.gate.pause_until(until)
                log.info("api.pause_restored", until=until)

    # -- status ----------------------------------------------------------

    async def _status_loop(self) -> None:
        """STATUS= and the watchdog on time, even while the database is slow or locked.

        The heartbeat and the state `health` reads are written by a task of their own,
        one at a time; the database files are checked on every turn.
        """
        async with anyio.create_task_group() as tg:
            while True:
                self.store.check_files()
                self.reporter.announce()
                if not self.reporter.persisting:
                    tg.start_soon(self.reporter.persist)
                await anyio.sleep(self.reporter.every)

    async def _publish_status(self) -> None:
        await self.reporter.publish()

    def status_line(self) -> str:
        """One line for systemd's STATUS=: jobs by state, trouble after."""
        return status_line(self.reporter.snapshot())

    async def metrics_text(self) -> str:
        """The Prometheus text for a scrape, with fresh delivery counts.

        While another process holds the database's lock, the last counts: a scrape
        has a deadline, the lock may not.
        """
        locked = self.store.lock_wait_since is not None
        snap = self.reporter.snapshot() if locked else await self.reporter.refresh()
        return render(snap, started_at=self.started_at)


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
