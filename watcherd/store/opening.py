"""`open_store`: a SQLite file path or a `postgresql://` URL to an open StoreApi."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from watcherd.errors import StoreError
from watcherd.store.core import Store
from watcherd.store.interface import StoreApi

PG_SCHEMES = ("postgresql://", "postgres://")


def is_postgres(target: str | Path) -> bool:
    """True for a `postgresql://` (or `postgres://`) URL, False for a file path."""
    return isinstance(target, str) and target.startswith(PG_SCHEMES)


@asynccontextmanager
async def open_store(
    target: str | Path, *, writer: bool, lock: bool | None = None, password: str | None = None
) -> AsyncIterator[StoreApi]:
    """Open the store at `target`: a SQLite file (with its daemon lock) or PostgreSQL.

    PostgreSQL takes no file lock: several daemons share it through leases.
    """
    if not is_postgres(target):
        async with Store.open(Path(target), writer=writer, lock=lock) as store:
            yield store
        return
    try:
        from watcherd.store.postgres.core import PgStore
    except ImportError as exc:
        raise StoreError(
            "store.url is a PostgreSQL URL but psycopg is not installed; install watcherd[postgres]"
        ) from exc
    async with PgStore.open(str(target), writer=writer, password=password) as pg:
        yield pg
