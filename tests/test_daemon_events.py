"""Event logs through the real daemon under SIGKILL: each event stored exactly once."""

from __future__ import annotations

import random
import signal
import subprocess
from pathlib import Path

import pytest

from tests.daemonharness import API_KEY, big_scenario, start_daemon, stop, stored, write_config
from watcherd.sim import World, run_in_thread

#: Poll timings that fetch every training job's log every 0.3 s, so kills land in fetches.
KILLS = 8
FAST = (
    "{interval: 0.3s, min_interval: 0.1s, metrics_interval: 0.3s, events_interval: 0.3s,"
    " max_backoff: 2s}"
)


@pytest.mark.timeout(200)
def test_events_fetches_cut_by_sigkill_store_nothing_twice(tmp_path: Path) -> None:
    """SIGKILL at random while logs are fetched every 0.3 s: stored logs equal the truth."""
    seed = random.randrange(1 << 30)
    print(f"events kill seed {seed}")
    rng = random.Random(seed)
    scenario = big_scenario(6, 400, seed=seed % 1000, speed=100)
    scenario["jobs"][0] |= {"n_epochs": 8, "n_checkpoints": 10, "diverge_at": 300}
    world = World(scenario)
    kills = 0
    with run_in_thread(world, api_key=API_KEY) as sim:
        config = write_config(tmp_path, sim.base_url, world.job_ids(), poll=FAST)
        for _ in range(KILLS):  # a bounded number of kills, so a loaded machine ends too
            proc = start_daemon(config, "--until-done")
            try:
                code = proc.wait(timeout=rng.uniform(1.0, 3.0))
            except subprocess.TimeoutExpired:
                stop(proc, signal.SIGKILL)
                kills += 1
                continue
            break
        else:
            code = start_daemon(config, "--until-done").wait(timeout=120)
        assert code == 0, (tmp_path / "daemon.log").read_text()[-3000:]
    data = stored(tmp_path / "watcherd.db")
    assert kills > 0 and data["integrity"] == "ok"
    for job_id in world.job_ids():
        assert data["events"][job_id] == world.events(job_id), job_id
