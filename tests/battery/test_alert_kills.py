"""Alerts and cancels under SIGKILL and SIGTERM loops: one episode, one delivery, one cancel."""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.battery.hookprobe import executions, hook_yaml, running_hooks
from tests.battery.sizes import draw_seed, report, sized
from tests.daemonharness import API_KEY, start_daemon, stop, stored, write_config
from watcherd.sim import SimServer, World, run_in_thread

STOPS = sized(6, 60)
SPEED = sized(20.0, 10.0)
ARMED = (
    "allow_cancel: true\nalerts:\n  nonfinite: {action: cancel}\n  diverging: {action: cancel}\n"
)
EVENTS = "    on: [alert.*, cancel_requested, completed, error, cancelled, user_error]\n"


def scenario(seed: int) -> dict[str, Any]:
    """Two sudden-NaN jobs, two slowly diverging ones, three healthy ones; short phases."""
    phases = dict.fromkeys(("pending", "queue", "compress", "upload"), 0.5 * SPEED)
    base = {"steps": 400, "seconds_per_step": 1, "eval_steps": 50} | phases
    return {
        "seed": seed % 1000,
        "speed": SPEED,
        "jobs": [
            base | {"count": 2, "diverge_at": 100, "suffix": "nan"},
            base | {"count": 2, "drift_at": 100, "drift": 0.05, "suffix": "drift"},
            base | {"count": 3, "steps": 300, "suffix": "fine"},
        ],
    }


def cancel_posts(sim: SimServer) -> Counter[str]:
    """POST /cancel requests served, by job."""
    posts = [r.path for r in sim.stats.snapshot() if r.method == "POST"]
    return Counter(p.split("/")[3] for p in posts if p.endswith("/cancel"))


@pytest.mark.timeout(sized(240, 3600))
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_alerts_and_cancels_survive_stops(tmp_path: Path, sig: signal.Signals) -> None:
    """Random stops: one cancel POST per bad job, the expected deliveries, repeats if cut only."""
    seed = draw_seed(f"alert stops {sig.name}")
    rng = random.Random(seed)
    world = World(scenario(seed))
    marker, log = f"probe-{uuid.uuid4().hex}", tmp_path / "hook.log"
    stops = cut = 0
    with run_in_thread(world, api_key=API_KEY) as sim:
        hooks = hook_yaml(log, marker, sleep=0.2) + EVENTS + ARMED
        config = write_config(tmp_path, sim.base_url, world.job_ids(), hooks=hooks)
        while True:
            proc = start_daemon(config, "--until-done")
            try:
                code = proc.wait(timeout=rng.uniform(0.3, 2.0) if stops < STOPS else 150)
            except subprocess.TimeoutExpired:
                cut += max(len(running_hooks(marker, parent=proc.pid)), 1)
                assert stop(proc, sig) in (0, -signal.SIGKILL)
                stops += 1
                continue
            assert code == 0, (tmp_path / "daemon.log").read_text()[-3000:]
            break
        posts = cancel_posts(sim)
    data = stored(tmp_path / "watcherd.db")
    cancels = _cancel_states(tmp_path / "watcherd.db")
    by_suffix = {j: str(world.job(j).spec.suffix) for j in world.job_ids()}
    bad = {j: {"nan": "nonfinite", "drift": "diverging"}.get(s) for j, s in by_suffix.items()}
    runs = executions(log)
    report(f"alert stops ({sig.name})", stops=stops, cancels=sum(posts.values()), hooks=len(runs))
    assert stops >= min(STOPS, 3)
    assert data["integrity"] == "ok"
    assert posts == Counter({j: 1 for j, rule in bad.items() if rule})
    assert sorted(cancels) == sorted(j for j, rule in bad.items() if rule)
    assert "requested" in cancels.values()
    for job_id in bad:
        # A cancel the job outran (it finished first) is `skipped`, and the job completed.
        stopped = cancels.get(job_id) == "requested"
        assert data["status"][job_id] == ("cancelled" if stopped else "completed"), job_id
    # `cancel_requested` lasts 5 sim s: a kill right after the call may hide it.
    seen = {j for j, ts in data["transitions"].items() if "cancel_requested" in _to(ts)}
    expected = sorted(_expected(bad, cancels, seen))
    assert sorted(d.id for d in data["deliveries"]) == expected
    assert all(d.state == "delivered" for d in data["deliveries"])
    assert sorted(runs) == expected
    repeats = sum(runs.values()) - len(runs)
    assert repeats <= (cut if sig == signal.SIGKILL else 0)


def _to(transitions: list[Any]) -> list[str]:
    return [t.to_status for t in transitions]


def _expected(bad: dict[str, str | None], cancels: dict[str, str], seen: set[str]) -> list[str]:
    """The delivery ids: per bad job its alert, resolved, cancel_requested (when that status
    was observed) and cancelled; per healthy job completed."""
    out = []
    for job_id, rule in bad.items():
        if rule is not None:
            out += [f"{job_id}:alert.{rule}:1:probe", f"{job_id}:alert.{rule}:1.resolved:probe"]
        if cancels.get(job_id) == "requested":
            out.append(f"{job_id}:cancelled:probe")
            out += [f"{job_id}:cancel_requested:probe"] if job_id in seen else []
        else:
            out.append(f"{job_id}:completed:probe")
    return out


def _cancel_states(db: Path) -> dict[str, str]:
    """Each cancel record's state, by job."""
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT job_id, cancel_state FROM cancels").fetchall())
