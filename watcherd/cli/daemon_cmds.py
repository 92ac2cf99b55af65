"""Commands that run things: the daemon, the config check, health and the demo."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import anyio

from watcherd.cli.common import load
from watcherd.config import Config, render_effective
from watcherd.daemon import Daemon, Mode
from watcherd.errors import StoreError
from watcherd.logs import configure_logging
from watcherd.model import MISSING, is_terminal
from watcherd.status import (
    AUTH_KEY,
    HEARTBEAT_EVERY_KEY,
    HEARTBEAT_KEY,
    STATUS_EVERY,
    STATUS_KEY,
)
from watcherd.store import Store
from watcherd.systemd import Notifier


def is_done(status: str) -> bool:
    """True for a status the poller no longer polls (terminal or missing)."""
    return is_terminal(status) or status == MISSING


#: `health` fails after this many missed heartbeats (60 s at the usual 5 s interval).
HEARTBEAT_MISSES = 12


def cmd_run(args: argparse.Namespace) -> int:
    """`watcherd run [--once | --until-done]`."""
    config = load(args)
    configure_logging(config.log)
    mode = Mode.ONCE if args.once else Mode.UNTIL_DONE if args.until_done else Mode.FOREVER
    daemon = Daemon(config.source or args.config, config, Notifier.from_environment())
    return anyio.run(daemon.run, mode, backend="asyncio")


def cmd_check_config(args: argparse.Namespace) -> int:
    """`watcherd check-config`: validate, then print the effective config."""
    config = load(args)
    print(render_effective(config), end="")
    return 0


def cmd_health(args: argparse.Namespace) -> int:
    """`watcherd health`: 0 if the daemon is alive and polling, else 1 with one line why."""
    config = load(args)
    reason = anyio.run(_health_problem, config, backend="asyncio")
    if reason is None:
        print("ok")
        return 0
    print(f"unhealthy: {reason}")
    return 1


async def _health_problem(config: Config) -> str | None:
    """Why the daemon of `config` is not healthy, or None if it is."""
    path = config.store.path
    if not path.exists():
        return f"no database at {path} (has the daemon ever run?)"
    if not Store.daemon_running(path):
        return f"no daemon holds the lock on {path}"
    locked_since = Store.locked_since(path)
    if locked_since is not None:
        waited = max(0.0, time.time() - locked_since)
        return (
            f"the database is locked by another process; the daemon has waited {waited:.0f}s"
            " to write and retries until the lock is released"
        )
    try:
        async with Store.open(path, writer=False) as store:
            health = await _read_health(store)
    except StoreError as exc:
        return f"cannot read the database: {exc}"
    return health.problem(config, time.time())


async def _read_health(store: Store) -> Health:
    """What the daemon last published, and whether any watched job can still change."""
    heartbeat = await store.get_state(HEARTBEAT_KEY)
    every = await store.get_state(HEARTBEAT_EVERY_KEY)
    states = await store.job_states()
    return Health(
        heartbeat=None if heartbeat is None else float(heartbeat),
        every=STATUS_EVERY if every is None else float(every),
        auth_error=await store.get_state(AUTH_KEY),
        status=await store.get_state(STATUS_KEY) or "starting",
        last_success=await store.last_successful_poll(),
        live_jobs=sum(1 for s in states.values() if not s.status or not is_done(s.status)),
    )


@dataclass(frozen=True, slots=True)
class Health:
    """The daemon's published state, as `health` judges it."""

    heartbeat: float | None
    every: float
    auth_error: str | None
    status: str
    last_success: float | None
    live_jobs: int

    def problem(self, config: Config, now: float) -> str | None:
        """The first thing wrong, as one line; None when healthy."""
        stale_after = HEARTBEAT_MISSES * self.every
        if self.heartbeat is None or now - self.heartbeat > stale_after:
            age = "never" if self.heartbeat is None else f"{now - self.heartbeat:.0f}s ago"
            return f"the daemon's heartbeat is stale (last {age}; hung or stopped?)"
        if self.auth_error:
            return f"{self.auth_error}; polling is paused until the key works ({self.status})"
        if self.live_jobs == 0:
            return None
        if self.last_success is None:
            return f"no successful poll yet ({self.status})"
        limit = max(3 * config.poll.interval, config.poll.max_backoff) + stale_after
        if now - self.last_success > limit:
            return f"last successful poll {now - self.last_success:.0f}s ago ({self.status})"
        return None


def cmd_demo(args: argparse.Namespace) -> int:
    """`watcherd demo`: the newcomer's first minute."""
    from watcherd.demo import run_demo

    return run_demo(keep=args.keep)
