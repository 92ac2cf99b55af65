"""Running one database call: SQLite's errors sorted, another process's lock waited out.

SQLite answers SQLITE_BUSY once `busy_timeout` passes while another connection holds
the write lock (`sqlite3 w.db "BEGIN EXCLUSIVE;"`). `CallGuard.run` does not give up:
each attempt is bounded by that timeout, the attempts are paced with a backoff, the
wait is logged (`store.locked`, `store.still_locked`, `store.unlocked`) and, for the
daemon, noted in its lock file, where `watcherd health` reads it (the database itself
cannot take a note while it is locked). A CLI command waits `patience` seconds at most.

`busy_since` tells how long the current call has run, so that a stop can cut a long
one short (`sqlite3_interrupt`); once the daemon is stopping, a wait for another
process's lock ends at once. Errors that waiting cannot cure (disk full, I/O error,
a corrupt file) become `StoreUnusableError`.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Final, TypeVar

import anyio
import structlog

from watcherd.errors import (
    StoreBusyError,
    StoreError,
    StoreInterruptedError,
    StoreUnusableError,
)
from watcherd.store import connection

T = TypeVar("T")

log = structlog.get_logger("watcherd.store")

#: Another connection holds the lock; it may let go.
_BUSY: Final = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})
#: Waiting does not help: the disk, the file system or the file itself failed.
_UNUSABLE: Final = frozenset(
    {
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_CORRUPT,
        sqlite3.SQLITE_NOTADB,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_PERM,
    }
)
#: Pause after the first busy attempt; it doubles up to BACKOFF_MAX.
BACKOFF_FIRST: Final = 0.05
BACKOFF_MAX: Final = 2.0
#: While the lock stays taken, `store.still_locked` is logged this often (seconds).
LOG_EVERY: Final = 30.0


def _primary_code(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else int(code) & 0xFF


def is_busy(exc: sqlite3.Error) -> bool:
    """True if another connection held the lock past the busy timeout."""
    return _primary_code(exc) in _BUSY


def store_error(exc: sqlite3.Error, path: Path) -> StoreError:
    """The StoreError for an SQLite error: unusable, interrupted, or plain."""
    code = _primary_code(exc)
    if code == sqlite3.SQLITE_INTERRUPT:
        return StoreInterruptedError(f"{path}: {exc} (the daemon is stopping)")
    if code in _UNUSABLE:
        name = getattr(exc, "sqlite_errorname", "")
        return StoreUnusableError(str(path), f"{exc} ({name})" if name else str(exc))
    return StoreError(f"{path}: {exc}")


def note_text(locked_since: float | None) -> str:
    """What the daemon writes in its lock file while it waits for another's lock."""
    return "" if locked_since is None else json.dumps({"store_locked_since": locked_since})


class CallGuard:
    """Runs the database calls of one connection: see the module docstring."""

    def __init__(self, path: Path, *, patience: float | None, note_fd: int | None) -> None:
        self.path = path
        self.patience = patience  # None: as long as it takes (the daemon)
        self.note_fd = note_fd
        self.stopping = anyio.Event()
        self.locked_since: float | None = None  # wall clock: the current wait began
        self.busy_since: float | None = None  # monotonic: the current attempt began
        self._waited_from = 0.0  # monotonic twin of locked_since
        self._attempts = 0
        self._logged_at = 0.0

    async def run(self, attempt: Callable[[], Awaitable[T]], what: str) -> T:
        """`attempt()` until it is not refused by another process's lock."""
        while True:
            if self.stopping.is_set() and self.locked_since is not None:
                raise StoreInterruptedError(f"{self.path}: stopped while the database was locked")
            self.busy_since = time.monotonic()
            try:
                result = await attempt()
            except sqlite3.Error as exc:
                if not is_busy(exc):
                    raise store_error(exc, self.path) from exc
                refused = str(exc)
            else:
                self._unlocked()
                return result
            finally:
                self.busy_since = None
            await self._pause(what, refused)

    async def _pause(self, what: str, error: str) -> None:
        """After a refused attempt: note, log, give up past patience, else back off."""
        now = time.monotonic()
        if self.locked_since is None:
            self.locked_since, self._waited_from, self._logged_at = time.time(), now, now
            self._note(self.locked_since)
            log.warning(
                "store.locked",
                path=str(self.path),
                operation=what,
                error=error,
                hint="another process holds the database's write lock; retrying until it lets go",
            )
        elif now - self._logged_at >= LOG_EVERY:
            self._logged_at = now
            log.warning("store.still_locked", path=str(self.path), waited=self._waited(now))
        if self.patience is not None and now - self._waited_from >= self.patience:
            self._unlocked(logged=False)
            raise StoreBusyError(
                f"{self.path}: the database is locked by another process"
                f" (gave up after {self.patience:g}s)"
            )
        delay = min(BACKOFF_FIRST * 2.0**self._attempts, BACKOFF_MAX)
        self._attempts += 1
        with anyio.move_on_after(delay):
            await self.stopping.wait()

    def _unlocked(self, *, logged: bool = True) -> None:
        if self.locked_since is None:
            return
        if logged:
            log.info("store.unlocked", path=str(self.path), waited=self._waited(time.monotonic()))
        self.locked_since, self._attempts = None, 0
        self._note(None)

    def _waited(self, now: float) -> float:
        return round(now - self._waited_from, 1)

    def _note(self, since: float | None) -> None:
        if self.note_fd is not None:
            connection.write_lock_note(self.note_fd, note_text(since))
