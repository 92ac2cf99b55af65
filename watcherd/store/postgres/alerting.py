"""Alert episodes and cancels on PostgreSQL: `watcherd.store.alerting`'s statements, run here.

`PgDb` is the `Db` those statements need: their `?` placeholders become psycopg's
`%s`, and the outbox is this backend's. The tables are migration 4 (`schema`); the
store methods, with the cluster's fencing, are in `alertstore`.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar

from watcherd.store.alerting import Db
from watcherd.store.postgres import outbox
from watcherd.store.postgres.sql import Conn, fetch
from watcherd.store.records import HookLike

P = ParamSpec("P")
T = TypeVar("T")


def placeholders(sql: str) -> str:
    """`?` placeholders as psycopg's `%s` (the shared statements hold no other `?` or `%`)."""
    if "%" in sql:
        raise ValueError(f"a shared statement may not hold '%': {sql}")
    return sql.replace("?", "%s")


@dataclass(frozen=True, slots=True)
class PgDb:
    """A `Db` on a PostgreSQL store's connection (inside the caller's transaction)."""

    conn: Conn

    async def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Sequence[Any]]:
        """Every row of one statement."""
        return list(await fetch(self.conn, placeholders(sql), params))

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run one statement."""
        await self.conn.execute(placeholders(sql), params)

    async def enqueue(
        self, job_id: str, event: str, at: float, hooks: Sequence[HookLike], name: str
    ) -> list[str]:
        """The PostgreSQL outbox's enqueue."""
        return await outbox.enqueue(self.conn, job_id, event, None, at, hooks, name=name)


def on_pg(
    op: Callable[Concatenate[Db, P], Awaitable[T]],
) -> Callable[Concatenate[Conn, P], Awaitable[T]]:
    """`op` as a PostgreSQL store operation (it takes the connection)."""

    @functools.wraps(op)
    async def run(conn: Conn, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await op(PgDb(conn), *args, **kwargs)

    return run
