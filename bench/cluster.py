"""`python -m bench.cluster [--jobs N] [--seconds S] [--kills K] [--lease L]`.

One versus two daemons on one PostgreSQL database (a throw-away server, as in the
tests): the requests each setup makes in the same S seconds of N running jobs, and the
failover time after a SIGKILL (kill -> the survivor holds every live job's lease).
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg

from tests.daemonharness import API_KEY, big_scenario, start_daemon, stop, write_config
from tests.pgharness import PgServer
from watcherd.sim import World, run_in_thread

POLL = "{interval: 2s, min_interval: 1s, metrics_interval: 4s, max_backoff: 10s}"


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


def _requests(server: PgServer, jobs: int, daemons: int, seconds: float, lease: float) -> int:
    """Requests `daemons` daemons make in `seconds` on `jobs` running jobs."""
    world = World(big_scenario(jobs, 100_000, seed=3, speed=1.0))
    with tempfile.TemporaryDirectory() as folder, run_in_thread(world, api_key=API_KEY) as sim:
        config = _config(Path(folder), server.fresh_database(), sim.base_url, world, lease)
        procs = [start_daemon(config, log=Path(folder) / f"d{i}.log") for i in range(daemons)]
        time.sleep(seconds)
        count = len(sim.stats.snapshot())
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
    """Seconds from each SIGKILL until the survivor holds every live job's lease."""
    world = World(big_scenario(jobs, 100_000, seed=4, speed=1.0))
    times: list[float] = []
    with tempfile.TemporaryDirectory() as folder, run_in_thread(world, api_key=API_KEY) as sim:
        url = server.fresh_database()
        config = _config(Path(folder), url, sim.base_url, world, lease)
        survivor = start_daemon(config, log=Path(folder) / "a.log")
        for _ in range(kills):
            victim = start_daemon(config, log=Path(folder) / "b.log")
            _wait(lambda: len(_holders(url)) == 2, 10 * lease)
            stop(victim, signal.SIGKILL)
            took = _wait(lambda: list(_holders(url).values()) == [jobs], 10 * lease)
            times.append(float("nan") if took is None else took)
        _end(survivor)
    return times


def main(argv: Sequence[str] | None = None) -> int:
    """Print the figures as JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.cluster")
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--lease", type=float, default=30.0)
    args = parser.parse_args(argv)
    with PgServer.running() as server:
        one = _requests(server, args.jobs, 1, args.seconds, args.lease)
        two = _requests(server, args.jobs, 2, args.seconds, args.lease)
        failover = _failovers(server, min(args.jobs, 100), args.kills, args.lease)
    figures = {
        "jobs": args.jobs,
        "seconds": args.seconds,
        "lease_s": args.lease,
        "requests_one_daemon": one,
        "requests_two_daemons": two,
        "ratio": round(two / one, 3) if one else None,
        "failover_s_median": round(statistics.median(failover), 2),
        "failover_s_max": round(max(failover), 2),
        "failover_s_all": [round(t, 2) for t in failover],
    }
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
