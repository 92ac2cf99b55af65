"""The PostgreSQL schema: named, ordered migrations recorded in `schema_migrations`.

The same tables as the SQLite schema (`watcherd.store.schema`), typed for PostgreSQL:
exact JSON text in `row_json`, `job_json` and `event_json`, integer-nanosecond
timestamps in BIGINT, times in DOUBLE PRECISION. Each step runs in its own transaction
with its `schema_migrations` row, under a transaction-level advisory lock, so two
daemons starting together apply each step once. Append steps; never edit one that shipped.
"""

from __future__ import annotations

import time
from typing import Final

from watcherd.errors import StoreError
from watcherd.store.postgres.sql import Conn, one
from watcherd.store.schema import Migration

_INITIAL = Migration(
    "initial",
    (
        """CREATE TABLE jobs (
            job_id TEXT PRIMARY KEY,
            note TEXT,
            watched INTEGER NOT NULL DEFAULT 1 CHECK (watched IN (0, 1)),
            added_at DOUBLE PRECISION NOT NULL,
            status TEXT,
            status_since DOUBLE PRECISION,
            max_step BIGINT,
            train_loss TEXT,
            eval_loss TEXT,
            best_train_loss DOUBLE PRECISION,
            best_eval_loss DOUBLE PRECISION,
            seconds_remaining DOUBLE PRECISION,
            last_poll_at DOUBLE PRECISION,
            last_error TEXT,
            last_error_at DOUBLE PRECISION,
            not_found_count INTEGER NOT NULL DEFAULT 0,
            model TEXT,
            model_output_name TEXT,
            job_json TEXT)""",
        """CREATE TABLE metrics (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            job_id TEXT NOT NULL,
            kind TEXT NOT NULL CHECK (kind IN ('train', 'eval')),
            step BIGINT NOT NULL,
            "timestamp" BIGINT NOT NULL,
            loss DOUBLE PRECISION,
            seq BIGINT,
            row_json TEXT NOT NULL,
            UNIQUE (job_id, kind, step))""",
        'CREATE INDEX metrics_order ON metrics (job_id, kind, "timestamp", step, seq)',
        "CREATE INDEX metrics_train_seq ON metrics (job_id, seq) WHERE kind = 'train'",
        """CREATE TABLE transitions (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            job_id TEXT NOT NULL,
            from_status TEXT,
            to_status TEXT NOT NULL,
            observed_at DOUBLE PRECISION NOT NULL)""",
        "CREATE INDEX transitions_job ON transitions (job_id, id)",
        """CREATE TABLE deliveries (
            id TEXT PRIMARY KEY,
            job_id TEXT NOT NULL,
            hook TEXT NOT NULL,
            event TEXT NOT NULL,
            previous_status TEXT,
            occurred_at DOUBLE PRECISION NOT NULL,
            state TEXT NOT NULL
                CHECK (state IN ('pending', 'running', 'delivered', 'failed', 'dead')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at DOUBLE PRECISION,
            started_at DOUBLE PRECISION,
            last_error TEXT,
            output_tail TEXT,
            created_at DOUBLE PRECISION NOT NULL,
            updated_at DOUBLE PRECISION NOT NULL)""",
        "CREATE INDEX deliveries_due ON deliveries (state, next_attempt_at)",
        "CREATE INDEX deliveries_job ON deliveries (job_id)",
        """CREATE TABLE events (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            job_id TEXT NOT NULL,
            digest TEXT NOT NULL,
            event_json TEXT NOT NULL,
            seen_at DOUBLE PRECISION NOT NULL,
            UNIQUE (job_id, digest))""",
        "CREATE TABLE state (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    ),
)

#: Leases: who polls a job, who runs a delivery, who makes a round's shared request.
#: `token` grows on every change of holder (the fencing token); `expires_at` is the
#: database clock's epoch seconds.
_LEASES = Migration(
    "leases",
    (
        """CREATE TABLE leases (
            name TEXT PRIMARY KEY,
            holder TEXT NOT NULL,
            token BIGINT NOT NULL,
            expires_at DOUBLE PRECISION NOT NULL)""",
        """CREATE TABLE daemons (
            instance TEXT PRIMARY KEY,
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            started_at DOUBLE PRECISION NOT NULL,
            seen_at DOUBLE PRECISION NOT NULL,
            expires_at DOUBLE PRECISION NOT NULL)""",
        # A running delivery belongs to `lease_holder` until `lease_expires`; its
        # `attempts` count is the fencing token of that attempt.
        "ALTER TABLE deliveries ADD COLUMN lease_holder TEXT",
        "ALTER TABLE deliveries ADD COLUMN lease_expires DOUBLE PRECISION",
    ),
)

#: A finished job whose last metrics fetch failed still owes its rows (as on SQLite).
_METRICS_PENDING = Migration(
    "metrics_pending",
    ("ALTER TABLE jobs ADD COLUMN metrics_pending INTEGER NOT NULL DEFAULT 0",),
)

#: Issue 16: the rules' memory and the ETA per job, alert episodes, cancels (as on SQLite).
_ALERTS = Migration(
    "alerts16: alert episodes, cancels, rule memory and ETA per job",
    (
        "ALTER TABLE jobs ADD COLUMN alert_state TEXT",
        "ALTER TABLE jobs ADD COLUMN eta_at DOUBLE PRECISION",
        "ALTER TABLE jobs ADD COLUMN eta_source TEXT",
        """CREATE TABLE alerts (
            job_id TEXT NOT NULL,
            rule TEXT NOT NULL,
            episode INTEGER NOT NULL,
            action TEXT NOT NULL DEFAULT 'alert',
            opened_at DOUBLE PRECISION NOT NULL,
            resolved_at DOUBLE PRECISION,
            details_json TEXT NOT NULL,
            resolution_json TEXT,
            PRIMARY KEY (job_id, rule, episode))""",
        "CREATE INDEX alerts_open ON alerts (job_id) WHERE resolved_at IS NULL",
        """CREATE TABLE cancels (
            job_id TEXT PRIMARY KEY,
            requested_by TEXT NOT NULL,
            rule TEXT,
            reason TEXT NOT NULL,
            decided_at DOUBLE PRECISION NOT NULL,
            cancel_state TEXT NOT NULL
                CHECK (cancel_state IN ('intent', 'requested', 'skipped')),
            attempts INTEGER NOT NULL DEFAULT 0,
            called_at DOUBLE PRECISION,
            finished_at DOUBLE PRECISION,
            last_error TEXT)""",
    ),
)

#: Why a job ended, its price (nano-dollars) and tokens at the last poll, when it was
#: created (epoch seconds): as SQLite's step of the same name.
_REASON_AND_PRICE = Migration(
    "job_reason_and_price",
    (
        "ALTER TABLE jobs ADD COLUMN reason TEXT",
        "ALTER TABLE jobs ADD COLUMN total_price BIGINT",
        "ALTER TABLE jobs ADD COLUMN token_count BIGINT",
        "ALTER TABLE jobs ADD COLUMN price_seen_at DOUBLE PRECISION",
        "ALTER TABLE jobs ADD COLUMN job_created_at DOUBLE PRECISION",
    ),
)

#: A job the service restarted as a new one: the new job's `restart_of` names the old.
_RESTARTS = Migration(
    "job_restarts",
    (
        "ALTER TABLE jobs ADD COLUMN restart_of TEXT",
        "CREATE INDEX jobs_restart_of ON jobs (restart_of) WHERE restart_of IS NOT NULL",
    ),
)

MIGRATIONS: Final[tuple[Migration, ...]] = (
    _INITIAL,
    _LEASES,
    _METRICS_PENDING,
    _ALERTS,
    _REASON_AND_PRICE,
    _RESTARTS,
)
SCHEMA_VERSION: Final = len(MIGRATIONS)

#: A transaction-level advisory lock key (released at commit, so poolers are no trouble).
_MIGRATE_LOCK: Final = 0x77617463  # "watc"
_BOOKKEEPING: Final = (
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"
)


async def version(conn: Conn) -> int:
    """The highest applied step, 0 for an empty database."""
    exists = await one(conn, "SELECT to_regclass('schema_migrations') IS NOT NULL")
    if exists is None or not exists[0]:
        return 0
    found = await one(conn, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
    return 0 if found is None else int(found[0])


def check_version(found: int, where: str, *, writer: bool) -> None:
    """Refuse a database from a newer watcherd, or an old one a reader may not upgrade."""
    if found > SCHEMA_VERSION:
        raise StoreError(
            f"{where}: schema version {found} is newer than this watcherd "
            f"understands ({SCHEMA_VERSION}); upgrade watcherd"
        )
    if found == 0 and not writer:
        raise StoreError(f"{where}: no database yet (the daemon creates it when it starts)")
    if found < SCHEMA_VERSION and not writer:
        raise StoreError(
            f"{where}: schema version {found} is older than {SCHEMA_VERSION}; "
            "start the daemon once to upgrade it"
        )


async def migrate(conn: Conn, where: str) -> int:
    """Apply every pending step, each in its own transaction; return how many ran."""
    applied = 0
    for number, step in enumerate(MIGRATIONS, start=1):
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATE_LOCK,))
            await conn.execute(_BOOKKEEPING)
            current = await version(conn)  # re-read under the lock: another daemon may have won
            check_version(current, where, writer=True)
            if current < number:
                for statement in step.statements:
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (%s, %s, %s)",
                    (number, step.name, time.time()),
                )
                applied += 1
    return applied
