"""`watcherd migrate --to postgresql://...`: a SQLite history copied into PostgreSQL.

Table by table, in batches of BATCH rows ordered by key, each batch in one
transaction; rows keep their ids (so every "in the order stored" stays) and every
insert skips a row already there, so an interrupted copy is resumed by running it
again. Values are copied as stored: the exact JSON texts, integer-nanosecond
timestamps, floats bit for bit. The SQLite file is only read.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

from watcherd.errors import StoreError
from watcherd.store.postgres.sql import Conn

BATCH: Final = 5000


@dataclass(frozen=True, slots=True)
class Table:
    """What to copy of one table: its columns, the key to resume by, the conflict."""

    name: str
    columns: tuple[str, ...]
    key: str
    conflict: str
    identity: bool = False  # PostgreSQL generates its ids: keep SQLite's (OVERRIDING)


TABLES: Final = (
    Table(
        "jobs",
        (
            "job_id", "note", "watched", "added_at", "status", "status_since", "max_step",
            "train_loss", "eval_loss", "best_train_loss", "best_eval_loss",
            "seconds_remaining", "last_poll_at", "last_error", "last_error_at",
            "not_found_count", "model", "model_output_name", "job_json", "metrics_pending",
            "alert_state", "eta_at", "eta_source",
            "reason", "total_price", "token_count", "price_seen_at", "job_created_at",
            "restart_of",
        ),
        "job_id",
        "(job_id)",
    ),
    Table(
        "metrics",
        ("id", "job_id", "kind", "step", "timestamp", "loss", "seq", "row_json"),
        "id",
        "DO NOTHING",
        identity=True,
    ),
    Table(
        "transitions",
        ("id", "job_id", "from_status", "to_status", "observed_at"),
        "id",
        "(id)",
        identity=True,
    ),
    Table(
        "deliveries",
        (
            "id", "job_id", "hook", "event", "previous_status", "occurred_at", "state",
            "attempts", "next_attempt_at", "started_at", "last_error", "output_tail",
            "created_at", "updated_at",
        ),
        "id",
        "(id)",
    ),
    Table(
        "events", ("id", "job_id", "digest", "event_json", "seen_at"), "id", "DO NOTHING",
        identity=True,
    ),
    Table("state", ("key", "value"), "key", "(key)"),
    Table(
        "alerts",
        (
            "job_id", "rule", "episode", "action", "opened_at", "resolved_at", "details_json",
            "resolution_json",
        ),
        "job_id, rule, episode",
        "(job_id, rule, episode)",
    ),
    Table(
        "cancels",
        (
            "job_id", "requested_by", "rule", "reason", "decided_at", "cancel_state", "attempts",
            "called_at", "finished_at", "last_error",
        ),
        "job_id",
        "(job_id)",
    ),
)  # fmt: skip


def open_source(path: Path) -> sqlite3.Connection:
    """The SQLite database, read-only; StoreError if it is not there."""
    if not path.exists():
        raise StoreError(f"{path}: no SQLite database to migrate")
    try:
        return sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: {exc}") from exc


def batches(source: sqlite3.Connection, table: Table) -> Iterator[list[tuple[Any, ...]]]:
    """The table's rows in key order, BATCH at a time."""
    names = ", ".join(f'"{c}"' for c in table.columns)
    cur = source.execute(f"SELECT {names} FROM {table.name} ORDER BY {table.key}")
    while rows := cur.fetchmany(BATCH):
        yield rows


def insert_sql(table: Table) -> str:
    """One row's insert, skipping a row already copied."""
    names = ", ".join(f'"{c}"' for c in table.columns)
    marks = ", ".join(["%s"] * len(table.columns))
    override = " OVERRIDING SYSTEM VALUE" if table.identity else ""
    conflict = table.conflict if table.conflict == "DO NOTHING" else f"{table.conflict} DO NOTHING"
    return f"INSERT INTO {table.name} ({names}){override} VALUES ({marks}) ON CONFLICT {conflict}"


async def copy_batch(conn: Conn, table: Table, rows: list[tuple[Any, ...]]) -> None:
    """Insert one batch (inside the caller's transaction)."""
    async with conn.cursor() as cur:
        await cur.executemany(insert_sql(table), rows)


async def reset_identity(conn: Conn, table: Table) -> None:
    """New rows get ids after the copied ones."""
    if table.identity:
        await conn.execute(
            f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'),"
            f" GREATEST((SELECT MAX(id) FROM {table.name}), 1))"
        )


async def count(conn: Conn, table: Table) -> int:
    """Rows in the PostgreSQL table."""
    cur = await conn.execute(f"SELECT COUNT(*) FROM {table.name}")
    found = await cur.fetchone()
    return 0 if found is None else int(found[0])
