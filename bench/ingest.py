"""Ingest: one finished job's whole history (steps + evals) on the first fetch.

watcherd runs its real Poller (retrieve, then one metrics fetch, then one store
transaction). The bare baseline fetches the same URL with httpx, `json.loads` it and
inserts the rows with one `executemany` in one transaction; the SDK baseline does the
same insert after the `together` SDK's `list_metrics`. Rates are rows per CPU second
of the measuring process (the simulator's time is its own process's).
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import httpx

from bench.common import (
    API_KEY,
    bench_api,
    bench_config,
    median,
    peak_rss_mb,
    run_worker,
    watcherd_http,
)
from bench.simclient import SimProcess
from bench.table import Row
from watcherd.store import Store
from watcherd.watch.poller import Poller

SYSTEMS = ("watcherd", "bare", "sdk")
_TABLE = """CREATE TABLE metrics (id INTEGER PRIMARY KEY, job_id TEXT NOT NULL,
    kind TEXT NOT NULL, step INTEGER NOT NULL, timestamp INTEGER NOT NULL, loss REAL,
    row_json TEXT NOT NULL, UNIQUE (job_id, kind, step))"""
_INSERT = "INSERT INTO metrics (job_id, kind, step, timestamp, loss, row_json) VALUES (?,?,?,?,?,?)"


def scenario(steps: int) -> dict[str, Any]:
    """One SFT job, long finished, with an eval row every 100 steps."""
    job = {"steps": steps, "seconds_per_step": 1, "eval_steps": 100, "created": -(steps + 3600)}
    return {"seed": 5, "jobs": [job]}


def _params(job_id: str, r: dict[str, Any]) -> tuple[Any, ...]:
    kind = "train" if "train/loss" in r else "eval"
    loss = r.get(f"{kind}/loss")
    return (job_id, kind, int(r["train/global_step"]), int(r["timestamp"]), loss, json.dumps(r))


def _insert(db: Path, job_id: str, rows: list[dict[str, Any]]) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute(_TABLE)
    conn.execute("BEGIN")
    conn.executemany(
        _INSERT,
        (_params(job_id, r) for r in rows),
    )
    conn.execute("COMMIT")
    conn.close()


async def run_watcherd(base_url: str, job_id: str, db: Path) -> int:
    """Watch the job and poll it once with watcherd's Poller; return the rows stored."""
    async with Store.open(db, writer=True) as store, watcherd_http() as http:
        await store.sync_watched([(job_id, None)], time.time())
        poller = Poller(store, bench_api(http, base_url), bench_config(db))
        await poller.load_jobs()
        await poller.poll_once()
    return stored_rows(db, job_id)


def stored_rows(db: Path, job_id: str) -> int:
    """How many rows the database holds for the job (counted, not read back into memory)."""
    conn = sqlite3.connect(db)
    try:
        found = conn.execute("SELECT COUNT(*) FROM metrics WHERE job_id = ?", (job_id,)).fetchone()
    finally:
        conn.close()
    return int(found[0])


def _bare(base_url: str, job_id: str, db: Path) -> int:
    reply = httpx.get(
        f"{base_url}/v1/fine-tunes/{job_id}/metrics",
        headers={"authorization": f"Bearer {API_KEY}"},
        timeout=300.0,
    )
    rows = json.loads(reply.content)["metrics"]
    _insert(db, job_id, rows)
    return len(rows)


def _sdk(base_url: str, job_id: str, db: Path) -> int:
    from together import Together

    client = Together(base_url=base_url, api_key=API_KEY, max_retries=0, timeout=300.0)
    rows = client.fine_tuning.list_metrics(job_id).metrics or []
    _insert(db, job_id, rows)
    return len(rows)


def worker(params: dict[str, Any]) -> dict[str, Any]:
    """One ingest by one system in this process: CPU, wall, rows and peak RSS."""
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(params.get("db") or Path(tmp) / "ingest.db")
        base_rss = peak_rss_mb()
        cpu, wall = time.process_time(), time.perf_counter()
        if params["system"] == "watcherd":
            rows = anyio.run(
                run_watcherd, params["base_url"], params["job_id"], db, backend="asyncio"
            )
        else:
            fn = _bare if params["system"] == "bare" else _sdk
            rows = fn(params["base_url"], params["job_id"], db)
        return {
            "rows": rows,
            "cpu": time.process_time() - cpu,
            "wall": time.perf_counter() - wall,
            "peak_rss_mb": peak_rss_mb(),
            "rss_before_mb": base_rss,
        }


def _body_mb(sim: SimProcess) -> float:
    url = f"{sim.base_url}/v1/fine-tunes/{sim.job_ids[0]}/metrics"
    reply = httpx.get(url, headers={"authorization": f"Bearer {API_KEY}"}, timeout=300.0)
    return len(reply.content) / 2**20


def figure(steps: int, repeats: int) -> list[Row]:
    """Rows per CPU second against both baselines, and peak RSS against the body size."""
    with tempfile.TemporaryDirectory() as tmp, SimProcess(scenario(steps), Path(tmp)) as sim:
        body = _body_mb(sim)  # also warms the simulator's row cache
        params = {"base_url": sim.base_url, "job_id": sim.job_ids[0]}
        runs: dict[str, list[dict[str, Any]]] = {s: [] for s in SYSTEMS}
        for _ in range(repeats):  # interleaved: a load that comes and goes hits every side
            for system, done in runs.items():
                done.append(run_worker("ingest", params | {"system": system}))
    rate = {s: median([r["rows"] / r["cpu"] for r in runs[s]]) for s in SYSTEMS}
    rss = median([r["peak_rss_mb"] for r in runs["watcherd"]])
    before = median([r["rss_before_mb"] for r in runs["watcherd"]])
    extra = {"runs": runs, "body_mb": body, "steps": steps}
    return [
        Row("ingest vs bare", rate["watcherd"], rate["bare"], ">= 1.0x",
            rate["watcherd"] >= rate["bare"], "rows/s", extra),
        Row("ingest vs SDK", rate["watcherd"], rate["sdk"], ">= 3x",
            rate["watcherd"] >= 3 * rate["sdk"], "rows/s"),
        Row("ingest peak RSS / body", rss / body, None, "<= 2x", rss <= 2 * body, "x",
            {"peak_rss_mb": rss, "rss_before_mb": before, "body_mb": body,
             "growth_over_body": (rss - before) / body}),
    ]  # fmt: skip
