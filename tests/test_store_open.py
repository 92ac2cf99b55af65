"""Opening the store: migrations, file modes, the daemon lock, read-only access."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from watcherd.errors import DatabaseLockedError, StoreError
from watcherd.store import PollRecord, Store
from watcherd.store.schema import MIGRATIONS, SCHEMA_VERSION

pytestmark = pytest.mark.anyio


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    conn.close()
    return {r[0] for r in rows}


async def test_migrates_an_empty_file_to_the_latest_version(tmp_path: Path) -> None:
    """A new database gets every migration, recorded by name and in user_version."""
    db = tmp_path / "w.db"
    async with Store.open(db, writer=True) as store:
        assert await store.integrity_check() == "ok"
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    names = [r[0] for r in conn.execute("SELECT name FROM schema_migrations ORDER BY version")]
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    assert names == [m.name for m in MIGRATIONS]
    assert {"jobs", "metrics", "transitions", "deliveries", "events", "state"} <= _tables(db)


async def test_reopening_is_idempotent_and_keeps_data(tmp_path: Path) -> None:
    """Opening a migrated database again applies nothing and loses nothing."""
    db = tmp_path / "w.db"
    async with Store.open(db, writer=True) as store:
        await store.sync_watched([("ft-a", "first")], 1.0)
    async with Store.open(db, writer=True) as store:
        assert list(await store.job_states()) == ["ft-a"]
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT COUNT(*) FROM schema_migrations").fetchone()[0] == SCHEMA_VERSION
    conn.close()


async def test_database_wal_shm_and_lock_files_are_private(tmp_path: Path) -> None:
    """The database, its -wal and -shm, and the lock file are created 0600."""
    db = tmp_path / "w.db"
    async with Store.open(db, writer=True) as store:
        await store.record_poll(PollRecord("ft-a", 1.0, None, "running"))
        files = [db, Path(f"{db}-wal"), Path(f"{db}-shm"), Path(f"{db}.lock")]
        assert {f.name: _mode(f) for f in files} == {f.name: 0o600 for f in files}


async def test_second_writer_is_refused_while_the_first_holds_the_lock(tmp_path: Path) -> None:
    """Only one daemon per database: a second writer gets DatabaseLockedError."""
    db = tmp_path / "w.db"
    async with Store.open(db, writer=True):
        with pytest.raises(DatabaseLockedError) as caught:
            async with Store.open(db, writer=True):
                pass  # pragma: no cover
    assert caught.value.path == str(db)


async def test_lock_is_released_on_close(tmp_path: Path) -> None:
    """After the first writer closes, a new writer opens fine."""
    db = tmp_path / "w.db"
    async with Store.open(db, writer=True):
        pass
    async with Store.open(db, writer=True) as store:
        assert await store.integrity_check() == "ok"


async def test_reader_sees_committed_writes_while_the_writer_is_open(tmp_path: Path) -> None:
    """A CLI reader works during the daemon's lifetime and sees each commit."""
    db = tmp_path / "w.db"
    async with Store.open(db, writer=True) as writer:
        await writer.sync_watched([("ft-a", "n")], 1.0)
        async with Store.open(db, writer=False) as reader:
            assert [j.job_id for j in await reader.overview()] == ["ft-a"]
            await writer.record_poll(PollRecord("ft-a", 2.0, None, "running"))
            assert (await reader.overview())[0].status == "running"


async def test_unlocked_writer_can_requeue_beside_the_daemon(tmp_path: Path) -> None:
    """`writer=True, lock=False` (for `hooks retry`) writes while the daemon holds the lock."""
    db = tmp_path / "w.db"
    async with Store.open(db, writer=True) as daemon:
        await daemon.sync_watched([("ft-a", None)], 1.0)
        async with Store.open(db, writer=True, lock=False) as cli:
            await cli.set_state("probe", "1")
        assert await daemon.get_state("probe") == "1"


async def test_reader_refuses_a_missing_database_without_creating_it(tmp_path: Path) -> None:
    """A reader on a path with no database raises StoreError and creates nothing."""
    db = tmp_path / "absent.db"
    with pytest.raises(StoreError, match="no database yet"):
        async with Store.open(db, writer=False):
            pass  # pragma: no cover
    assert _names(tmp_path) == []


async def test_reader_refuses_to_write(tmp_path: Path) -> None:
    """A read-only store raises StoreError on any write method."""
    db = tmp_path / "w.db"
    async with Store.open(db, writer=True):
        pass
    async with Store.open(db, writer=False) as reader:
        with pytest.raises(StoreError, match="read-only"):
            await reader.set_state("k", "v")


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    """A database written by a newer watcherd is not touched."""
    db = tmp_path / "w.db"
    async with Store.open(db, writer=True):
        pass
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    for writer in (True, False):
        with pytest.raises(StoreError, match="newer"):
            async with Store.open(db, writer=writer):
                pass  # pragma: no cover


async def test_reader_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    """A reader cannot migrate, so an older schema is an error that says what to do."""
    db = tmp_path / "w.db"
    sqlite3.connect(db).close()
    with pytest.raises(StoreError, match="start the daemon"):
        async with Store.open(db, writer=False):
            pass  # pragma: no cover


async def test_daemon_running_probes_the_lock_both_ways(tmp_path: Path) -> None:
    """`Store.daemon_running(path)` and `store.daemon_running()` tell whether a daemon runs."""
    db = tmp_path / "w.db"
    assert Store.daemon_running(db) is False
    assert _names(tmp_path) == []  # probing creates nothing
    async with Store.open(db, writer=True):
        assert Store.daemon_running(db) is True
        async with Store.open(db, writer=False) as reader:
            assert reader.daemon_running() is True
    assert Store.daemon_running(db) is False
