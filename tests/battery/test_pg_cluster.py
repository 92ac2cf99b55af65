"""Two daemons on one PostgreSQL database, one SIGKILLed in a loop and restarted.

Faults fly (20 % of requests, Retry-After included); the other daemon takes over the
killed one's jobs and deliveries within a lease period (2 s here).
"""

from __future__ import annotations

import random
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.battery.hookprobe import executions, hook_yaml, running_hooks
from tests.battery.sizes import draw_seed, report, sized
from tests.battery.test_faults import FAULTS, describe, early_requests
from tests.daemonharness import API_KEY, assert_exact, start_daemon, stop, write_config
from watcherd.model import is_settled
from watcherd.sim import World, run_in_thread
from watcherd.store.opening import open_store

KILLS = sized(6, 60)
SPEED = sized(15.0, 5.0)
GROUPS = sized(((5, 300), (5, 600)), ((25, 1000), (25, 2000)))
LEASE = "2s"
#: How long a pause one daemon takes may go unseen by the other (0.02 s to store it,
#: 0.06 s between looks, plus scheduling on a loaded machine): requests the other daemon
#: sent within this long after the 429/503 are counted as breaches but tolerated.
SHARE_WINDOW = 0.6


def scenario(seed: int) -> dict[str, Any]:
    """SFT jobs of two lengths, short phases."""
    phases = dict.fromkeys(("pending", "queue", "compress", "upload"), 0.5 * SPEED)
    jobs = [
        {"count": count, "steps": steps, "seconds_per_step": 1, "eval_steps": 100} | phases
        for count, steps in GROUPS
    ]
    return {"seed": seed % 1000, "speed": SPEED, "jobs": jobs}


def pg_config(folder: Path, url: str, base_url: str, world: World, hooks: str) -> Path:
    """The harness config with `store.url` (and a short lease) instead of a file."""
    config = write_config(folder, base_url, world.job_ids(), hooks=hooks, timeout="1.5s")
    store = f"  url: '{url}'\n  lease: {LEASE}\n"
    config.write_text(config.read_text().replace("  path: watcherd.db\n", store))
    return config


def read(url: str) -> dict[str, Any]:
    """Rows, statuses, event logs and deliveries as stored in PostgreSQL."""

    async def go() -> dict[str, Any]:
        async with open_store(url, writer=False) as store:
            jobs = await store.overview(include_unwatched=True)
            return {
                "metrics": {j.job_id: await store.all_metrics(j.job_id) for j in jobs},
                "status": {j.job_id: j.status for j in jobs},
                "events": {j.job_id: await store.events(j.job_id) for j in jobs},
                "deliveries": await store.deliveries(),
            }

    return anyio.run(go, backend="asyncio")


def done(url: str, world: World) -> bool:
    """Every job settled and every delivery delivered, as stored."""
    data = read(url)
    settled = all(is_settled(data["status"].get(j)) for j in world.job_ids())
    return settled and all(d.state == "delivered" for d in data["deliveries"])


@pytest.mark.timeout(sized(240, 3600))
def test_two_daemons_one_killed_in_a_loop(tmp_path: Path, pg_url: str) -> None:
    """Exact rows and event logs, one delivery per id (repeats within the kill bound),
    and every Retry-After pause obeyed by both daemons once shared (SHARE_WINDOW)."""
    seed = draw_seed("pg cluster")
    rng = random.Random(seed)
    world = World(scenario(seed))
    marker, log = f"probe-{uuid.uuid4().hex}", tmp_path / "hook.log"
    kills = repeat_bound = 0
    with run_in_thread(world, api_key=API_KEY, faults=f"{FAULTS},seed={seed}") as sim:
        hooks = hook_yaml(log, marker, sleep=0.3)
        config = pg_config(tmp_path, pg_url, sim.base_url, world, hooks)
        steady = start_daemon(config, log=tmp_path / "a.log")
        started = time.monotonic()
        try:
            while kills < KILLS:
                victim = start_daemon(config, log=tmp_path / "b.log")
                time.sleep(rng.uniform(1.0, 4.0))
                repeat_bound += max(len(running_hooks(marker, parent=victim.pid)), 1)
                stop(victim, signal.SIGKILL)
                kills += 1
            victim = start_daemon(config, log=tmp_path / "b.log")
            deadline = time.monotonic() + sized(150, 3000)
            while not done(pg_url, world) and time.monotonic() < deadline:
                time.sleep(0.5)
        finally:
            codes = [stop(p) for p in (steady, victim)]
        elapsed = time.monotonic() - started
        requests = sim.stats.snapshot()
    data = read(pg_url)
    runs = executions(log)
    expected = sorted(f"{j}:completed:probe" for j in world.job_ids())
    lists = [r for r in requests if r.path.rstrip("/").endswith("fine-tunes")]
    early = early_requests(requests)
    unshared = [(a, b) for a, b in early if b.time - (a.time + a.duration) > SHARE_WINDOW]
    report(
        "pg cluster (two daemons, one killed in a loop)",
        kills=kills,
        seconds=round(elapsed, 1),
        requests=len(requests),
        list_requests=len(lists),
        rows_expected=sum(len(world.truth(j)) for j in world.job_ids()),
        rows_stored=sum(len(v) for v in data["metrics"].values()),
        deliveries=len(data["deliveries"]),
        hook_runs=sum(runs.values()),
        repeated=sum(runs.values()) - len(runs),
        repeat_bound=repeat_bound,
        retry_after_breaches=len(early),
        breaches_past_share_window=len(unshared),
    )
    assert codes == [0, 0], (tmp_path / "a.log").read_text()[-3000:]
    assert_exact(world, data["metrics"])
    for job_id in world.job_ids():  # whichever daemon fetched a log, each event once
        assert data["events"][job_id] == world.events(job_id), job_id
    assert sorted(d.id for d in data["deliveries"]) == expected
    assert all(d.state == "delivered" for d in data["deliveries"])
    assert sorted(runs) == expected
    assert sum(runs.values()) - len(runs) <= repeat_bound
    assert not unshared, [describe(limited, later) for limited, later in unshared[:6]]
