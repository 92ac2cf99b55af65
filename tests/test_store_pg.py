"""The PostgreSQL store's own behaviour: migrations, readers, a lost connection."""

from __future__ import annotations

import anyio
import psycopg
import pytest

from tests.pgharness import PgServer
from watcherd.errors import StoreError
from watcherd.store import PollRecord
from watcherd.store.opening import is_postgres, open_store
from watcherd.store.postgres.schema import MIGRATIONS, SCHEMA_VERSION

pytestmark = pytest.mark.anyio


def _scalar(url: str, sql: str) -> object:
    with psycopg.connect(url) as conn:
        row = conn.execute(sql).fetchone()
    assert row is not None
    return row[0]


async def test_migrates_once_even_when_two_writers_open_together(pg_url: str) -> None:
    """Two daemons starting at once apply every step once, in order, by name."""
    async with anyio.create_task_group() as tg:
        for _ in range(2):
            tg.start_soon(_open_and_close, pg_url)
    with psycopg.connect(pg_url) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM schema_migrations ORDER BY version")]
    assert names == [m.name for m in MIGRATIONS]
    async with open_store(pg_url, writer=True) as store:
        assert await store.integrity_check() == "ok"


async def _open_and_close(url: str) -> None:
    async with open_store(url, writer=True) as store:
        await store.sync_watched([("ft-a", None)], 1.0)


async def test_reader_refuses_an_empty_database_and_writes(pg_url: str) -> None:
    """A reader never migrates: no schema yet is an error; a reader's write is refused."""
    with pytest.raises(StoreError, match="no database yet"):
        async with open_store(pg_url, writer=False):
            pass  # pragma: no cover
    async with open_store(pg_url, writer=True), open_store(pg_url, writer=False) as reader:
        with pytest.raises(StoreError, match="read-only"):
            await reader.set_state("k", "v")


async def test_a_newer_schema_is_refused(pg_url: str) -> None:
    """A database migrated by a newer watcherd is not touched by either kind of store."""
    async with open_store(pg_url, writer=True):
        pass
    with psycopg.connect(pg_url) as conn:
        conn.execute(
            "INSERT INTO schema_migrations VALUES (%s, 'future', 0)", (SCHEMA_VERSION + 1,)
        )
    for writer in (True, False):
        with pytest.raises(StoreError, match="newer"):
            async with open_store(pg_url, writer=writer):
                pass  # pragma: no cover


async def test_two_writers_share_one_database(pg_url: str) -> None:
    """No file lock on PostgreSQL: two writers open together and see each other's commits."""
    async with open_store(pg_url, writer=True) as one, open_store(pg_url, writer=True) as two:
        await one.sync_watched([("ft-a", None)], 1.0)
        await two.record_poll(PollRecord("ft-a", 2.0, None, "running"))
        assert (await one.job_states())["ft-a"].status == "running"
        assert _scalar(pg_url, "SELECT COUNT(*) FROM transitions") == 1


async def test_a_lost_connection_is_an_error_then_reconnects(pg_url: str) -> None:
    """A killed backend makes one call fail with StoreError; the next call reconnects."""
    async with open_store(pg_url, writer=True) as store:
        await store.set_state("k", "1")
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE pid <> pg_backend_pid() AND datname = current_database()"
            )
        with pytest.raises(StoreError):
            await store.get_state("k")
        assert await store.get_state("k") == "1"


async def test_an_unreachable_server_is_a_store_error(pg_server: PgServer) -> None:
    """A URL whose server does not answer fails with StoreError, the URL's password masked."""
    url = f"postgresql://u:hunter2@/db?host={pg_server.root}/absent"
    with pytest.raises(StoreError, match="cannot connect") as caught:
        async with open_store(url, writer=True):
            pass  # pragma: no cover
    assert "hunter2" not in str(caught.value)


def test_targets_are_told_apart_by_scheme() -> None:
    """postgresql:// and postgres:// URLs are PostgreSQL; anything else is a SQLite path."""
    assert is_postgres("postgresql://h/db") and is_postgres("postgres://h/db")
    assert not is_postgres("watcherd.db") and not is_postgres("postgresql.db")
