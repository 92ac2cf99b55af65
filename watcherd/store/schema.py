"""The database schema as named, ordered migrations keyed by `PRAGMA user_version`.

Each step runs in its own `BEGIN IMMEDIATE` transaction together with the
`user_version` bump, so a crash leaves either the old schema or the new one.
Append new steps at the end; never edit a step that has shipped.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Final, NamedTuple

from watcherd.errors import StoreError

if TYPE_CHECKING:
    import aiosqlite


#: One schema step: a name for humans and the statements that apply it. (Declared with
#: types, not as a class: under `from __future__ import annotations` a class body's
#: annotations are text, which `NamedTuple` compiles, and `list` would pay for that.)
Migration = NamedTuple("Migration", [("name", str), ("statements", tuple[str, ...])])  # noqa: UP014


_INITIAL = Migration(
    "initial",
    (
        """CREATE TABLE schema_migrations (
            version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)""",
        # One row per job ever configured; `watched` = in the current configuration.
        # train_loss/eval_loss hold the last loss as JSON number text, so NaN survives.
        """CREATE TABLE jobs (
            job_id TEXT PRIMARY KEY,
            note TEXT,
            watched INTEGER NOT NULL DEFAULT 1 CHECK (watched IN (0, 1)),
            added_at REAL NOT NULL,
            status TEXT,
            status_since REAL,
            max_step INTEGER,
            train_loss TEXT,
            eval_loss TEXT,
            best_train_loss REAL,
            best_eval_loss REAL,
            seconds_remaining REAL,
            last_poll_at REAL,
            last_error TEXT,
            last_error_at REAL,
            not_found_count INTEGER NOT NULL DEFAULT 0,
            model TEXT,
            model_output_name TEXT,
            job_json TEXT)""",
        # row_json is the row exactly as received; the other columns are extracted.
        # loss is train/loss or eval/loss by kind, NULL when absent or NaN (see row_json).
        # seq numbers a job's train rows 0, 1, ... in API order, for `resolution` sampling.
        """CREATE TABLE metrics (
            id INTEGER PRIMARY KEY,
            job_id TEXT NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('train', 'eval')),
            step INTEGER NOT NULL,
            timestamp INTEGER NOT NULL,
            loss REAL,
            seq INTEGER,
            row_json TEXT NOT NULL,
            UNIQUE (job_id, kind, step))""",
        "CREATE INDEX metrics_order ON metrics (job_id, kind, timestamp, step, seq)",
        "CREATE INDEX metrics_train_seq ON metrics (job_id, seq) WHERE kind = 'train'",
        """CREATE TABLE transitions (
            id INTEGER PRIMARY KEY,
            job_id TEXT NOT NULL,
            from_status TEXT,
            to_status TEXT NOT NULL,
            observed_at REAL NOT NULL)""",
        "CREATE INDEX transitions_job ON transitions (job_id, id)",
        """CREATE TABLE deliveries (
            id TEXT PRIMARY KEY,
            job_id TEXT NOT NULL,
            hook TEXT NOT NULL,
            event TEXT NOT NULL,
            previous_status TEXT,
            occurred_at REAL NOT NULL,
            state TEXT NOT NULL
                CHECK (state IN ('pending', 'running', 'delivered', 'failed', 'dead')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL,
            started_at REAL,
            last_error TEXT,
            output_tail TEXT,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL)""",
        "CREATE INDEX deliveries_due ON deliveries (state, next_attempt_at)",
        "CREATE INDEX deliveries_job ON deliveries (job_id)",
        """CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            job_id TEXT NOT NULL,
            digest TEXT NOT NULL,
            event_json TEXT NOT NULL,
            seen_at REAL NOT NULL,
            UNIQUE (job_id, digest))""",
        "CREATE TABLE state (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    ),
)

# Each job's settled cursor (see `store.cursor`), kept on its row so that reading it
# never touches the job's history; filled here with two index probes per job and a
# range over its last 5 s of rows. A frozen copy of `cursor.SETTLED`: never edit it.
_STORED_CURSOR = Migration(
    "stored_cursor",
    (
        "ALTER TABLE jobs ADD COLUMN cursor_step INTEGER",
        """UPDATE jobs SET cursor_step = (
            SELECT min(m.step) FROM metrics AS m INDEXED BY metrics_order
            WHERE m.job_id = jobs.job_id AND m.kind IN ('train', 'eval') AND m.timestamp > max(
                coalesce((SELECT max(timestamp) FROM metrics
                    WHERE job_id = jobs.job_id AND kind = 'train'), -9223372036854775808),
                coalesce((SELECT max(timestamp) FROM metrics
                    WHERE job_id = jobs.job_id AND kind = 'eval'), -9223372036854775808)
            ) - 5000000000)""",
    ),
)

# A finished job whose last metrics fetch failed: its transition and hooks are
# recorded, its metrics are still being fetched (hook payloads and `show` say so).
_METRICS_PENDING = Migration(
    "metrics_pending",
    ("ALTER TABLE jobs ADD COLUMN metrics_pending INTEGER NOT NULL DEFAULT 0",),
)

_ALERTS = Migration(
    "alerts16: alert episodes, cancels, rule memory and ETA per job",
    (
        # The rules' memory (alerts.AlertState as JSON) and the ETA with its source.
        "ALTER TABLE jobs ADD COLUMN alert_state TEXT",
        "ALTER TABLE jobs ADD COLUMN eta_at REAL",
        "ALTER TABLE jobs ADD COLUMN eta_source TEXT",
        # One row per (job, rule, episode); details are the values that tripped it.
        """CREATE TABLE alerts (
            job_id TEXT NOT NULL,
            rule TEXT NOT NULL,
            episode INTEGER NOT NULL,
            action TEXT NOT NULL DEFAULT 'alert',
            opened_at REAL NOT NULL,
            resolved_at REAL,
            details_json TEXT NOT NULL,
            resolution_json TEXT,
            PRIMARY KEY (job_id, rule, episode))""",
        "CREATE INDEX alerts_open ON alerts (job_id) WHERE resolved_at IS NULL",
        # At most one cancel per job: the intent is written before the call is made.
        """CREATE TABLE cancels (
            job_id TEXT PRIMARY KEY,
            requested_by TEXT NOT NULL,
            rule TEXT,
            reason TEXT NOT NULL,
            decided_at REAL NOT NULL,
            cancel_state TEXT NOT NULL
                CHECK (cancel_state IN ('intent', 'requested', 'skipped')),
            attempts INTEGER NOT NULL DEFAULT 0,
            called_at REAL,
            finished_at REAL,
            last_error TEXT)""",
    ),
)

# Why a job ended (see `watcherd.eventlog.reason`), and its price (nano-dollars, as the
# service reports it: it grows while the job runs) and token count at the last poll;
# `job_created_at` (epoch seconds of the job object's `created_at`) dates its spend.
_REASON_AND_PRICE = Migration(
    "job_reason_and_price",
    (
        "ALTER TABLE jobs ADD COLUMN reason TEXT",
        "ALTER TABLE jobs ADD COLUMN total_price INTEGER",
        "ALTER TABLE jobs ADD COLUMN token_count INTEGER",
        "ALTER TABLE jobs ADD COLUMN price_seen_at REAL",
        "ALTER TABLE jobs ADD COLUMN job_created_at REAL",
    ),
)

# A job the service restarted as a new one (a `job_restarted` event naming it):
# the new job's `restart_of` names the old one, and it is watched while that is.
_RESTARTS = Migration(
    "job_restarts",
    (
        "ALTER TABLE jobs ADD COLUMN restart_of TEXT",
        "CREATE INDEX jobs_restart_of ON jobs (restart_of) WHERE restart_of IS NOT NULL",
    ),
)

MIGRATIONS: Final[tuple[Migration, ...]] = (
    _INITIAL,
    _STORED_CURSOR,
    _METRICS_PENDING,
    _ALERTS,
    _REASON_AND_PRICE,
    _RESTARTS,
)
SCHEMA_VERSION: Final = len(MIGRATIONS)


async def user_version(conn: aiosqlite.Connection) -> int:
    """The schema version recorded in the database file."""
    async with conn.execute("PRAGMA user_version") as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


def check_version(version: int, path: str, *, writer: bool) -> None:
    """Refuse a database from a newer watcherd, or an old one we may not upgrade."""
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path}: schema version {version} is newer than this watcherd "
            f"understands ({SCHEMA_VERSION}); upgrade watcherd"
        )
    if version < SCHEMA_VERSION and not writer:
        raise StoreError(
            f"{path}: schema version {version} is older than {SCHEMA_VERSION}; "
            "start the daemon once to upgrade it"
        )


async def migrate(conn: aiosqlite.Connection, path: str) -> int:
    """Apply every pending step, each in its own transaction; return how many ran."""
    applied = 0
    for version, step in enumerate(MIGRATIONS, start=1):
        await conn.execute("BEGIN IMMEDIATE")
        try:
            current = await user_version(conn)  # re-read: another writer may have won
            check_version(current, path, writer=True)
            if current < version:
                await _apply(conn, version, step)
                applied += 1
            await conn.execute("COMMIT")
        except BaseException:
            await conn.execute("ROLLBACK")
            raise
    return applied


async def _apply(conn: aiosqlite.Connection, version: int, step: Migration) -> None:
    for statement in step.statements:
        await conn.execute(statement)
    await conn.execute(
        "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
        (version, step.name, time.time()),
    )
    await conn.execute(f"PRAGMA user_version = {int(version)}")
