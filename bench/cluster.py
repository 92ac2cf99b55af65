"""`python -m bench.cluster [--jobs N] [--seconds S] [--warmup W] [--kills K] [--lease L]`.

One versus two daemons on one PostgreSQL database (a throw-away server, as in the
tests): the requests each setup makes in the same S seconds of N running jobs, counted
after W seconds (every job polled once, the work rebalanced), beside what polling every
job exactly on schedule would make; the
failover time after a SIGKILL at a random point of the victim's renewal cycle (kill ->
the survivor holds every live job's lease); and what the read of the shared pause that
gates each request costs (wall and CPU per read, this process as the client).
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import statistics
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import psycopg

from tests.daemonharness import API_KEY, big_scenario, start_daemon, stop, write_config
from tests.pgharness import PgServer
from watcherd.sim import World, run_in_thread
from watcherd.store.postgres.core import PgStore
from watcherd.watch.wiring import saved_gate

INTERVAL, METRICS = 30.0, 60.0
POLL = (
    f"{{interval: {INTERVAL}s, min_interval: 2s, metrics_interval: {METRICS}s, max_backoff: 10s}}"
)


def _config(folder: Path, url: str, base: str, world: World, lease: float) -> Path:
    config = write_config(folder, base, world.job_ids(), poll=POLL)
    store = f"  url: '{url}'\n  lease: {lease}s\n"
    config.write_text(config.read_text().replace("  path: watcherd.db\n", store))
    return config


def _holders(url: str) -> dict[str, int]:
    """Live job leases per holder."""
    with psycopg.connect(url) as conn:
        try:
            rows = conn.execute(
                "SELECT holder, COUNT(*) FROM leases WHERE name LIKE 'job:%'"
                " AND expires_at > extract(epoch from clock_timestamp()) GROUP BY holder"
            ).fetchall()
        except psycopg.errors.UndefinedTable:  # no daemon has created the tables yet
            return {}
    return {str(h): int(n) for h, n in rows}


def _requests(
    server: PgServer, jobs: int, daemons: int, window: tuple[float, float], lease: float
) -> int:
    """Requests `daemons` daemons make on `jobs` running jobs in `window` (warm-up, seconds)."""
    warmup, seconds = window
    world = World(big_scenario(jobs, 100_000, seed=3, speed=1.0))
    with tempfile.TemporaryDirectory() as folder, run_in_thread(world, api_key=API_KEY) as sim:
        config = _config(Path(folder), server.fresh_database(), sim.base_url, world, lease)
        procs = [start_daemon(config, log=Path(folder) / f"d{i}.log") for i in range(daemons)]
        time.sleep(warmup)
        before = len(sim.stats.snapshot())
        time.sleep(seconds)
        count = len(sim.stats.snapshot()) - before
        for proc in procs:
            _end(proc)
    return count


def _end(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, and SIGKILL if the stop takes over a minute (1,000 jobs, a loaded host)."""
    try:
        stop(proc, timeout=60)
    except subprocess.TimeoutExpired:
        stop(proc, signal.SIGKILL)


def _wait(predicate: Any, timeout: float) -> float | None:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.05)
    return None


def _failovers(server: PgServer, jobs: int, kills: int, lease: float) -> list[float]:
    """Seconds from each SIGKILL until the survivor holds every live job's lease; each
    kill lands at a random point of the victim's renewal cycle (a quarter lease)."""
    world = World(big_scenario(jobs, 100_000, seed=4, speed=1.0))
    rng = random.Random(4)
    times: list[float] = []
    with tempfile.TemporaryDirectory() as folder, run_in_thread(world, api_key=API_KEY) as sim:
        url = server.fresh_database()
        config = _config(Path(folder), url, sim.base_url, world, lease)
        survivor = start_daemon(config, log=Path(folder) / "a.log")
        for _ in range(kills):
            victim = start_daemon(config, log=Path(folder) / "b.log")
            _wait(lambda: len(_holders(url)) == 2, 10 * lease)
            time.sleep(rng.uniform(0, lease / 4))
            stop(victim, signal.SIGKILL)
            took = _wait(lambda: list(_holders(url).values()) == [jobs], 10 * lease)
            times.append(float("nan") if took is None else took)
        _end(survivor)
    return times


def _pause_reads(server: PgServer, reads: int = 2000) -> dict[str, float]:
    """Milliseconds of wall and CPU time per read of the shared pause (the gate's path)."""

    async def go() -> dict[str, float]:
        async with PgStore.open(server.fresh_database(), writer=True) as store:
            gate = saved_gate(store, "api.example", shared=True)
            await store.set_host_pause("api.example", time.time() - 1)
            for _ in range(50):  # connect, warm up
                await gate.refresh(3600.0)
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(reads):
                await gate.refresh(3600.0)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        return {"wall_ms": round(1000 * wall / reads, 3), "cpu_ms": round(1000 * cpu / reads, 3)}

    return anyio.run(go, backend="asyncio")


def main(argv: Sequence[str] | None = None) -> int:
    """Print the figures as JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.cluster")
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--warmup", type=float, default=60.0)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--lease", type=float, default=30.0)
    args = parser.parse_args(argv)
    with PgServer.running() as server:
        window = (args.warmup, args.seconds)
        one = _requests(server, args.jobs, 1, window, args.lease)
        two = _requests(server, args.jobs, 2, window, args.lease)
        failover = _failovers(server, min(args.jobs, 100), args.kills, args.lease)
        reads = _pause_reads(server)
    figures = {
        "jobs": args.jobs,
        "seconds": args.seconds,
        "lease_s": args.lease,
        "requests_on_schedule": round(args.jobs * args.seconds / METRICS + args.seconds / INTERVAL),
        "requests_one_daemon": one,
        "requests_two_daemons": two,
        "ratio": round(two / one, 3) if one else None,
        "failover_s_median": round(statistics.median(failover), 2),
        "failover_s_max": round(max(failover), 2),
        "failover_s_all": [round(t, 2) for t in failover],
        "pause_read_ms": reads,
    }
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
