"""Opening the database file: the daemon lock, file modes, pragmas, migrations."""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from watcherd.errors import DatabaseLockedError, StoreError
from watcherd.store.schema import check_version, migrate, user_version

if TYPE_CHECKING:
    import aiosqlite

    from watcherd.store.calls import CallGuard

#: How long one attempt waits for another connection's write lock, in milliseconds.
#: A refused attempt is retried (`calls.CallGuard`); a stop waits for one attempt at most.
BUSY_TIMEOUT_MS = 1_000
_PRIVATE = 0o600
#: (device, inode) of the database, its -wal and its -shm file; None where missing.
Identity = tuple[tuple[int, int] | None, ...]


def lock_path(path: Path) -> Path:
    """The file whose `flock` marks the one daemon that owns `path`."""
    return path.with_name(path.name + ".lock")


def acquire_lock(path: Path) -> int:
    """Take the exclusive, non-blocking daemon lock; return its file descriptor."""
    try:
        fd = os.open(lock_path(path), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, _PRIVATE)
    except OSError as exc:
        raise StoreError(f"{lock_path(path)}: cannot open the lock file: {exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DatabaseLockedError(str(path)) from None
    os.ftruncate(fd, 0)  # a note left by a daemon that died is not ours
    return fd


def lock_held(path: Path) -> bool:
    """True if some process (a daemon) holds the lock on `path`; creates nothing.

    Probes with a non-blocking shared flock, released at once.
    """
    try:
        fd = os.open(lock_path(path), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the probe's shared lock too
    return False


def release_lock(fd: int) -> None:
    """Drop the daemon lock (closing the descriptor releases the flock)."""
    os.close(fd)


def write_lock_note(fd: int, text: str) -> None:
    """Replace the lock file's contents: what the daemon says about its database.

    Written, then cut to length: a reader never sees the file empty mid-way.
    """
    data = text.encode()
    os.pwrite(fd, data, 0)
    os.ftruncate(fd, len(data))


def read_lock_note(path: Path) -> str:
    """The lock file's contents ("" if it is missing or empty)."""
    try:
        return lock_path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def locked_since(path: Path) -> float | None:
    """Since when the daemon of `path` waits for another process's lock (None: it does not)."""
    try:
        found = json.loads(read_lock_note(path) or "{}")
        return float(found["store_locked_since"])
    except (ValueError, KeyError, TypeError):
        return None


def file_identity(path: Path) -> Identity:
    """Which files `path` and its -wal and -shm names point at now."""
    found: list[tuple[int, int] | None] = []
    for suffix in ("", "-wal", "-shm"):
        try:
            st = os.stat(path.with_name(path.name + suffix))
        except FileNotFoundError:
            found.append(None)
        else:
            found.append((st.st_dev, st.st_ino))
    return tuple(found)


def _create_private(path: Path) -> None:
    """Create the database file 0600 if missing; SQLite gives -wal/-shm the same mode."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, _PRIVATE)
    except OSError as exc:
        raise StoreError(f"{path}: cannot create the database: {exc}") from exc
    os.close(fd)


def target(path: Path, *, writer: bool) -> tuple[str, bool]:
    """What to hand sqlite3.connect, and whether it is a URI; readers never create."""
    if writer:
        _create_private(path)
        return str(path), False
    if not path.exists():
        raise StoreError(f"{path}: no database yet (the daemon creates it when it starts)")
    return f"file:{quote(str(path.resolve()))}?mode=ro", True


async def connect(path: Path, *, writer: bool, guard: CallGuard) -> aiosqlite.Connection:
    """An open, configured, migrated (writer) or version-checked (reader) connection.

    Another process's lock on the database is waited out as `guard` says.
    """
    import aiosqlite  # the daemon's: the read commands open the file with plain sqlite3

    target_name, uri = target(path, writer=writer)
    try:
        conn = await aiosqlite.connect(target_name, uri=uri, isolation_level=None)
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: cannot open the database: {exc}") from exc
    try:
        await guard.run(lambda: _configure(conn, str(path), writer=writer), "open")
    except BaseException:
        await conn.close()
        raise
    return conn


async def _configure(conn: aiosqlite.Connection, path: str, *, writer: bool) -> None:
    await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    if writer:
        await conn.execute("PRAGMA journal_mode = WAL")
        await conn.execute("PRAGMA synchronous = FULL")
        await migrate(conn, path)
    else:
        check_version(await user_version(conn), path, writer=False)
