"""The health protocol: what the running daemon publishes and how `watcherd health` judges it.

The daemon writes a heartbeat, its interval, its status line and any API key trouble
into the store's state table every few seconds (`publish`); `watcherd health`, a
separate process, reads them back with the lock and the last successful poll
(`check`) and names the first thing wrong. Both sides live here so that the keys
and their meaning cannot drift apart.
"""

# No `from __future__ import annotations`: see `watcherd.model` (named tuples).

from typing import TYPE_CHECKING, Final, NamedTuple

from watcherd.errors import ConfigError, StoreError
from watcherd.model import is_settled
from watcherd.store.opening import describe
from watcherd.store.snapshot import Snapshot, read_store

if TYPE_CHECKING:
    from watcherd.config import ReadConfig
    from watcherd.store.interface import StoreApi, StoreReader

HEARTBEAT_KEY: Final = "heartbeat_at"
HEARTBEAT_EVERY_KEY: Final = "heartbeat_every"
STATUS_KEY: Final = "status_line"
AUTH_KEY: Final = "auth_error"
#: The longest gap between two status updates (heartbeat, STATUS=, watchdog ping).
STATUS_EVERY: Final = 5.0
#: `health` fails after this many missed heartbeats (60 s at the usual 5 s interval).
HEARTBEAT_MISSES: Final = 12


async def publish(
    store: "StoreApi", *, now: float, every: float, line: str, auth_error: str | None
) -> None:
    """Write what `check` reads: the heartbeat, its interval, the status line, key trouble."""
    await store.set_state(HEARTBEAT_KEY, repr(now))
    await store.set_state(HEARTBEAT_EVERY_KEY, repr(every))
    await store.set_state(STATUS_KEY, line)
    await store.set_state(AUTH_KEY, auth_error)


def check(config: "ReadConfig", now: float) -> str | None:
    """Why the daemon of `config` is not healthy, as one line; None if it is.

    On SQLite a plain sqlite3 read (`Snapshot`): no event loop, so the check starts fast.
    """
    if config.store.url is not None:
        return _check_shared(config, now)
    path = config.store.path
    if not path.exists():
        return f"no database at {path} (has the daemon ever run?)"
    if not Snapshot.daemon_running(path):
        return f"no daemon holds the lock on {path}"
    locked_since = Snapshot.locked_since(path)
    if locked_since is not None:
        return (
            "the database is locked by another process; the daemon has waited"
            f" {max(0.0, now - locked_since):.0f}s to write and retries until the lock is released"
        )
    try:
        health = read_store(config.store, _read)
    except StoreError as exc:
        return f"cannot read the database: {exc}"
    return health.problem(config, now)


def _check_shared(config: "ReadConfig", now: float) -> str | None:
    """On a shared database: some daemon's heartbeat is current, and what the daemons
    last published (the newest heartbeat of any of them) is healthy."""
    import anyio

    from watcherd.store.opening import open_configured

    async def shared() -> "Health | None":
        async with open_configured(config.store, writer=False) as store:
            return await _read(store) if await store.live_daemons() else None

    try:
        health = anyio.run(shared, backend="asyncio")
    except (StoreError, ConfigError) as exc:
        return f"cannot read the database: {exc}"
    if health is None:
        return f"no daemon has a current heartbeat in {describe(config.store)}"
    return health.problem(config, now)


async def _read(store: "StoreReader") -> "Health":
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
        live_jobs=sum(1 for s in states.values() if not is_settled(s.status)),
    )


class Health(NamedTuple):
    """The daemon's published state, as `health` judges it."""

    heartbeat: float | None
    every: float
    auth_error: str | None
    status: str
    last_success: float | None
    live_jobs: int

    def problem(self, config: "ReadConfig", now: float) -> str | None:
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
