"""`watcherd migrate --to postgresql://...`: a SQLite history copied exactly, resumable."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import psycopg

from tests.cliharness import recorded
from tests.daemonharness import daemon_env
from watcherd.alerts.episodes import AlertChange, Evaluation
from watcherd.alerts.state import AlertState
from watcherd.store import PollRecord
from watcherd.store.opening import open_store


def _everything(target: str | Path) -> dict[str, Any]:
    """All a reader can see, from either backend (NaN-safe through repr)."""

    async def go() -> dict[str, Any]:
        async with open_store(target, writer=False) as store:
            jobs = await store.overview(include_unwatched=True)
            ids = [j.job_id for j in jobs]
            return {
                "jobs": repr(jobs),
                "job_json": repr([await store.job(j) for j in ids]),
                "metrics": {j: await store.metrics_json(j) for j in ids},
                "transitions": repr([await store.transitions(j) for j in ids]),
                "deliveries": repr(await store.deliveries()),
                "events": repr([await store.events(j) for j in ids]),
                "summary": repr([await store.metrics_summary(j) for j in ids]),
                "last_poll": await store.last_successful_poll(),
                "alerts": repr(await store.alerts()),
                "cancels": repr(await store.cancels()),
                "job_states": repr(await store.job_states(ids)),
            }

    return anyio.run(go, backend="asyncio")


def _alert_and_cancel(db: Path, job_id: str, status: str | None) -> None:
    """An alert episode on `job_id` and a person's cancel, as a daemon and the CLI write them."""
    change = AlertChange("stalled", 1, True, 7.0, {"message": "no new step for 1h"})
    verdict = Evaluation(AlertState(open={"stalled": 1}, episodes={"stalled": 1}), (change,))

    async def go() -> None:
        async with open_store(db, writer=True, lock=False) as store:
            await store.record_poll(PollRecord(job_id, 7.0, None, status, evaluation=verdict))
            await store.user_cancel(job_id, 8.0, "by hand")

    anyio.run(go, backend="asyncio")


def _migrate(config: Path, url: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "watcherd", "migrate", "--to", url, "--config", str(config)]
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=120, check=False, env=daemon_env()
    )


def test_migrate_copies_exactly_and_resumes(tmp_path: Path, pg_url: str) -> None:
    """Every reader sees the same history on PostgreSQL; cut rows come back on a re-run."""
    with recorded(tmp_path) as rec:
        _alert_and_cancel(rec.db, rec.ids["nan"], rec.world.status_at(rec.ids["nan"]))
        done = _migrate(rec.config, pg_url)
        assert done.returncode == 0, done.stderr
        assert "metrics:" in done.stdout
        before = _everything(rec.db)
        assert "stalled" in before["alerts"] and "by hand" in before["cancels"]
        assert _everything(pg_url) == before
        with psycopg.connect(pg_url) as conn:  # an interrupted copy: the later rows missing
            conn.execute("DELETE FROM metrics WHERE id > (SELECT MAX(id) / 2 FROM metrics)")
            conn.execute("DELETE FROM transitions WHERE id > 3")
            conn.execute("DELETE FROM cancels")
        again = _migrate(rec.config, pg_url)
        assert again.returncode == 0, again.stderr
        assert _everything(pg_url) == before
