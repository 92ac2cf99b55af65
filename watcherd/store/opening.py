"""`open_store`: a SQLite file path or a `postgresql://` URL to an open StoreApi."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from watcherd.errors import StoreError

if TYPE_CHECKING:
    from watcherd.config.reading import StoreConfig
    from watcherd.store.interface import StoreApi

PG_SCHEMES = ("postgresql://", "postgres://")


def is_postgres(target: str | Path) -> bool:
    """True for a `postgresql://` (or `postgres://`) URL, False for a file path."""
    return isinstance(target, str) and target.startswith(PG_SCHEMES)


@asynccontextmanager
async def open_store(
    target: str | Path,
    *,
    writer: bool,
    lock: bool | None = None,
    password: str | None = None,
    lease: float = 30.0,
) -> AsyncIterator[StoreApi]:
    """Open the store at `target`: a SQLite file (with its daemon lock) or PostgreSQL.

    PostgreSQL takes no file lock: several daemons share it through leases.
    """
    if not is_postgres(target):
        from watcherd.store.core import Store  # here: `store_exists` and `describe` stay light

        async with Store.open(Path(target), writer=writer, lock=lock) as store:
            yield store
        return
    try:
        from watcherd.store.postgres.core import PgStore
    except ImportError as exc:
        raise StoreError(
            "store.url is a PostgreSQL URL but psycopg is not installed; install watcherd[postgres]"
        ) from exc
    async with PgStore.open(str(target), writer=writer, password=password, lease=lease) as pg:
        yield pg


@asynccontextmanager
async def open_configured(
    config: StoreConfig, *, writer: bool, lock: bool | None = None
) -> AsyncIterator[StoreApi]:
    """The configured store: `store.url` (password resolved now) or the `store.path` file."""
    if config.url is None:
        async with open_store(config.path, writer=writer, lock=lock) as store:
            yield store
        return
    password = None if config.password is None else config.password.resolve()
    async with open_store(config.url, writer=writer, password=password, lease=config.lease) as pg:
        yield pg


def describe(config: StoreConfig) -> str:
    """Where the store is, for logs and messages: the path, or the URL masked."""
    from watcherd.config.secrets import redact_url

    return str(config.path) if config.url is None else redact_url(config.url)


def store_exists(config: StoreConfig) -> bool:
    """Whether there may be a history to read: a PostgreSQL URL, or the file exists."""
    return config.url is not None or config.path.exists()
