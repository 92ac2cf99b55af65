"""A large stored history written straight into a watcherd database: no API, no daemon.

`build` creates the file at a chosen schema version (the current one, or an older one
to measure an upgrade) and fills it with SFT-like rows in one transaction, journal
off: a million rows in seconds, where ingesting them through the API takes minutes.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from watcherd.store import cursor
from watcherd.store.schema import MIGRATIONS, SCHEMA_VERSION

#: Nanoseconds between two train steps, and from a train row to its eval row.
STEP_NS: Final = 1_000_000_000
EVAL_LAG_NS: Final = 400_000_000
EVAL_EVERY: Final = 100
T0: Final = 1_700_000_000 * 10**9

_INSERT: Final = (
    "INSERT INTO metrics (job_id, kind, step, timestamp, loss, row_json, seq)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)


def job_ids(jobs: int) -> list[str]:
    """The IDs `build` gives its jobs."""
    return [f"ft-history-{i:04d}" for i in range(jobs)]


def _rows(job_id: str, steps: int) -> Iterator[tuple[object, ...]]:
    """A job's `metrics` rows in API order: a train row per step, an eval row every 100."""
    for step in range(1, steps + 1):
        stamp, loss = T0 + step * STEP_NS, 2.0 / step
        train = (
            f'{{"timestamp":{stamp},"train/global_step":{step},"train/epoch":{step / steps},'
            f'"train/loss":{loss},"train/learning_rate":1e-05}}'
        )
        yield (job_id, "train", step, stamp, loss, train, step - 1)
        if step % EVAL_EVERY == 0:
            stamp += EVAL_LAG_NS
            evaluation = f'{{"timestamp":{stamp},"train/global_step":{step},"eval/loss":{loss}}}'
            yield (job_id, "eval", step, stamp, loss, evaluation, None)


def _create(conn: sqlite3.Connection, version: int) -> None:
    """The schema as watcherd's first `version` migrations leave it."""
    for number, step in enumerate(MIGRATIONS[:version], start=1):
        for statement in step.statements:
            conn.execute(statement)
        conn.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
            (number, step.name, time.time()),
        )
    conn.execute(f"PRAGMA user_version = {int(version)}")


def build(
    db: Path, jobs: int, steps: int, *, status: str = "running", version: int = SCHEMA_VERSION
) -> list[str]:
    """A new database at schema `version` holding `jobs` watched jobs of `steps` steps."""
    ids = job_ids(jobs)
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = OFF")
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("PRAGMA cache_size = -262144")  # 256 MiB: the indexes stay in memory
        conn.execute("BEGIN")
        _create(conn, version)
        for job_id in ids:
            conn.executemany(_INSERT, _rows(job_id, steps))
            conn.execute(
                "INSERT INTO jobs (job_id, watched, added_at, status, status_since, max_step)"
                " VALUES (?, 1, ?, ?, ?, ?)",
                (job_id, time.time(), status, time.time(), steps),
            )
            if version >= 2:
                conn.execute(cursor.UPDATE, (job_id,))
        conn.execute("COMMIT")
        conn.execute("PRAGMA journal_mode = WAL")
    finally:
        conn.close()
    db.chmod(0o600)
    return ids
