"""Sim time that moves only once the daemon has recorded where every job stands.

A simulator on a real-time clock races the daemon: on a loaded machine a phase of a few
seconds can pass between two of its polls, and that status is never seen. Here a thread
moves a `ManualClock` by `step` sim seconds at a time, and only once the daemon's SQLite
database shows, for every job, the status the simulator gives it now. Every phase at
least `step` long is then recorded, however slow the machine.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

from watcherd.model import is_terminal
from watcherd.sim import ManualClock, World


def stored_statuses(db: Path) -> dict[str, str | None]:
    """job_id -> status as the daemon stored it ({} before the database has its tables)."""
    if not db.exists():
        return {}
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            return dict(conn.execute("SELECT job_id, status FROM jobs").fetchall())
    except sqlite3.Error:  # not created yet, or busy: look again
        return {}


def caught_up(world: World, db: Path) -> bool:
    """True when the database holds every job's current sim status."""
    stored = stored_statuses(db)
    return all(stored.get(job_id) == world.status_at(job_id) for job_id in world.job_ids())


def _drive(world: World, clock: ManualClock, db: Path, step: float, done: threading.Event) -> None:
    """Advance by `step` each time the daemon caught up, until every job is terminal."""
    while not done.is_set():
        if not caught_up(world, db):
            done.wait(0.05)
            continue
        if all(is_terminal(world.status_at(j) or "") for j in world.job_ids()):
            return
        clock.advance(step)


@contextlib.contextmanager
def lockstep(world: World, clock: ManualClock, db: Path, step: float) -> Iterator[None]:
    """Drive `clock` (the one `world` runs on) in step with the daemon writing `db`."""
    done = threading.Event()
    thread = threading.Thread(target=_drive, args=(world, clock, db, step, done), daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(timeout=10)
