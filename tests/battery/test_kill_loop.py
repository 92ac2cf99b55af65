"""The kill-loop battery: SIGKILL at random while jobs finish, faults fly and hooks run."""

from __future__ import annotations

import random
import signal
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.battery.hookprobe import executions, hook_yaml, running_hooks
from tests.battery.sizes import draw_seed, report, sized
from tests.battery.test_faults import FAULTS
from tests.daemonharness import API_KEY, assert_exact, start_daemon, stop, stored, write_config
from watcherd.sim import World, run_in_thread

#: At most this many kills; the jobs last long enough for most of them to land.
KILLS = sized(10, 100)
SPEED = sized(50.0, 5.0)
#: Jobs finishing at different times, so that kills land while hooks run.
GROUPS = sized(((5, 300), (5, 500), (5, 700), (5, 1000)), ((25, 1000), (25, 2000)))


def scenario(seed: int) -> dict[str, Any]:
    """Groups of SFT jobs of different lengths; short phases."""
    phases = dict.fromkeys(("pending", "queue", "compress", "upload"), 0.5 * SPEED)
    jobs = [
        {"count": count, "steps": steps, "seconds_per_step": 1, "eval_steps": 100} | phases
        for count, steps in GROUPS
    ]
    return {"seed": seed % 1000, "speed": SPEED, "jobs": jobs}


@pytest.mark.timeout(sized(150, 3600))
def test_kill_loop_keeps_history_and_deliveries(tmp_path: Path) -> None:
    """SIGKILL every 0.5-5 s: exact rows, sound file, one delivery each, repeats only if cut."""
    seed = draw_seed("kill loop")
    rng = random.Random(seed)
    world = World(scenario(seed))
    marker, log = f"probe-{uuid.uuid4().hex}", tmp_path / "hook.log"
    kills = kills_during_hook = repeat_bound = 0
    with run_in_thread(world, api_key=API_KEY, faults=f"{FAULTS},seed={seed}") as sim:
        hooks = hook_yaml(log, marker, sleep=0.3)
        config = write_config(tmp_path, sim.base_url, world.job_ids(), hooks=hooks, timeout="1.5s")
        while True:
            proc = start_daemon(config, "--until-done")
            try:
                code = proc.wait(
                    timeout=rng.uniform(0.5, 5.0) if kills < KILLS else sized(120, 900)
                )
            except subprocess.TimeoutExpired:
                cut = len(running_hooks(marker, parent=proc.pid))
                kills_during_hook += bool(cut)
                # Each hook a kill cuts short may run again; so may one caught between
                # its start being recorded and its exec, or its exit and its outcome.
                repeat_bound += max(cut, 1)
                stop(proc, signal.SIGKILL)
                kills += 1
                continue
            assert code == 0, (tmp_path / "daemon.log").read_text()[-3000:]
            break
        faulted = sum(sim.stats.by_fault.values())
    data = stored(tmp_path / "watcherd.db")
    runs = executions(log)
    expected = sorted(f"{j}:completed:probe" for j in world.job_ids())
    repeats = sum(runs.values()) - len(runs)
    report(
        "kill loop",
        kills=kills,
        kills_during_hook=kills_during_hook,
        faulted_requests=faulted,
        rows_expected=sum(len(world.truth(j)) for j in world.job_ids()),
        rows_stored=sum(len(v) for v in data["metrics"].values()),
        deliveries_expected=len(expected),
        deliveries_made=len(data["deliveries"]),
        hook_runs=sum(runs.values()),
        repeated=repeats,
        repeat_bound=repeat_bound,
    )
    assert kills >= min(KILLS, 3)
    assert data["integrity"] == "ok"
    assert_exact(world, data["metrics"])
    assert sorted(d.id for d in data["deliveries"]) == expected
    assert all(d.state == "delivered" for d in data["deliveries"])
    assert sorted(runs) == expected
    assert repeats <= repeat_bound
