"""`watcherd migrate --to postgresql://...`: the SQLite history into a shared store."""

from __future__ import annotations

import argparse

import anyio

from watcherd.cli.common import load
from watcherd.config import Config
from watcherd.errors import UsageError
from watcherd.store.opening import is_postgres


def cmd_migrate(args: argparse.Namespace) -> int:
    """Copy every table; 0 when PostgreSQL holds at least every row read."""
    config = load(args)
    if not is_postgres(args.to):
        raise UsageError(f"--to must be a postgresql:// URL, got {args.to[:60]!r}")
    found = anyio.run(_copy, config, args.to, backend="asyncio")
    short = False
    for table, (read, there) in found.items():
        print(f"{table}: {read} rows read from {config.store.path}, {there} in PostgreSQL")
        short = short or there < read
    return 1 if short else 0


async def _copy(config: Config, url: str) -> dict[str, tuple[int, int]]:
    from watcherd.store.postgres.core import PgStore

    password = None if config.store.password is None else config.store.password.resolve()
    async with PgStore.open(url, writer=True, password=password) as store:
        return await store.copy_from_sqlite(config.store.path)
