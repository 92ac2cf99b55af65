"""Running the store tests on both backends: a SQLite file or a PostgreSQL schema."""

from __future__ import annotations

import contextlib
import itertools
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from tests.pgharness import PgServer

BACKENDS: Final = ("sqlite", "postgresql")


@dataclass(frozen=True, slots=True)
class Backend:
    """Where a test's store lives: `fresh` gives an empty one each call."""

    name: str
    server: PgServer | None = None
    _jobs: Iterator[int] = field(default_factory=itertools.count)
    _shared: dict[str, str] = field(default_factory=dict)

    @contextlib.contextmanager
    def fresh(self) -> Iterator[str | Path]:
        """An empty store target: a file in a temporary folder, or a new schema's URL."""
        if self.server is not None:
            yield self.server.fresh_schema()
            return
        with tempfile.TemporaryDirectory() as folder:
            yield Path(folder) / "w.db"

    @contextlib.contextmanager
    def per_example(self) -> Iterator[tuple[str | Path, str]]:
        """(target, job id) for one hypothesis example: a new SQLite file each time, or
        one PostgreSQL schema for the session with a job id never used before in it."""
        if self.server is None:
            with self.fresh() as target:
                yield target, "ft-a"
            return
        if "url" not in self._shared:
            self._shared["url"] = self.server.fresh_schema()
        yield self._shared["url"], self.job_id()

    def job_id(self) -> str:
        """A job id never used before in this session (to share one store across examples)."""
        return f"ft-h{next(self._jobs)}"


def query(target: str | Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Rows of one query straight from the database (`?` placeholders on both backends)."""
    if isinstance(target, Path):
        with contextlib.closing(sqlite3.connect(target)) as conn:
            return conn.execute(sql, params).fetchall()
    import psycopg

    with psycopg.connect(target) as conn:
        return conn.execute(sql.replace("?", "%s"), params).fetchall()


def execute(target: str | Path, sql: str, params: tuple[Any, ...] = ()) -> None:
    """Run one statement straight on the database and commit (`?` placeholders)."""
    if isinstance(target, Path):
        with contextlib.closing(sqlite3.connect(target)) as lite, lite:
            lite.execute(sql, params)
        return
    import psycopg

    with psycopg.connect(target) as conn:
        conn.execute(sql.replace("?", "%s"), params)
