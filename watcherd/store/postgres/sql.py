"""Small helpers every PostgreSQL module uses: the connection type, the database's
clock, fetch one or all."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, TypeAlias

import psycopg

Conn: TypeAlias = psycopg.AsyncConnection[tuple[Any, ...]]
Params: TypeAlias = Sequence[Any] | dict[str, Any]
#: The database's clock in epoch seconds: every lease is in it.
NOW: Final = "extract(epoch from clock_timestamp())::float8"


async def fetch(conn: Conn, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
    """Every row of one statement."""
    cur = await conn.execute(sql, params)
    return await cur.fetchall()


async def one(conn: Conn, sql: str, params: Params = ()) -> tuple[Any, ...] | None:
    """The first row of one statement, or None."""
    cur = await conn.execute(sql, params)
    return await cur.fetchone()
