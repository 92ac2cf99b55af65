"""The real daemon and the read commands on a PostgreSQL store."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import anyio

from tests.cliharness import FINISHED
from tests.daemonharness import API_KEY, daemon_env, start_daemon, write_config
from tests.simharness import NOW
from watcherd.model import MetricFilter
from watcherd.sim import ManualClock, World, run_in_thread
from watcherd.spend import NANO
from watcherd.store.opening import open_store


def _watcherd(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "watcherd", *args, "--config", str(config)]
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=60, check=False, env=daemon_env()
    )


def test_the_daemon_records_into_postgresql_and_every_reader_sees_it(
    tmp_path: Path, pg_url: str
) -> None:
    """`run --until-done` on store.url fills PostgreSQL; list, show, metrics, events, cost,
    hooks, wait and health read it."""
    world = World(dict(FINISHED), clock=ManualClock(NOW))
    with run_in_thread(world, api_key=API_KEY) as sim:
        config = write_config(tmp_path, sim.base_url, world.job_ids())
        text = config.read_text().replace("  path: watcherd.db\n", f"  url: '{pg_url}'\n")
        config.write_text(text)
        code = start_daemon(config, "--until-done").wait(timeout=90)
        assert code == 0, (tmp_path / "daemon.log").read_text()[-3000:]
    assert not (tmp_path / "watcherd.db").exists()  # nothing went to a SQLite file
    listed = _watcherd(config, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    statuses = {j["job_id"]: j["status"] for j in json.loads(listed.stdout)}
    assert statuses == {j: world.status_at(j) for j in world.job_ids()}
    sft = next(j for j in world.job_ids() if world.job(j).spec.suffix == "sft")
    metrics = _watcherd(config, "metrics", sft, "--json")
    assert metrics.returncode == 0, metrics.stderr
    assert len(json.loads(metrics.stdout)) == len(world.metrics(sft, MetricFilter()))
    for command in (["show", sft], ["hooks"], ["wait", sft, "--timeout", "20s"]):
        done = _watcherd(config, *command)
        assert done.returncode == 0, done.stderr
    _events_cost_and_show(config, world, sft)
    checked = _watcherd(config, "check-config")
    assert "# store backend: postgresql" in checked.stdout
    health = _watcherd(config, "health")  # the daemon stopped cleanly: its heartbeat is gone
    assert health.returncode == 1 and "no daemon has a current heartbeat" in health.stdout


def _events_cost_and_show(config: Path, world: World, job_id: str) -> None:
    """`events`, `cost` and `show` read the shared store as they read a SQLite file."""
    events = _watcherd(config, "events", job_id, "--json")
    assert events.returncode == 0, events.stderr
    assert json.loads(events.stdout) == world.events(job_id)
    cost = _watcherd(config, "cost", "--by", "job", "--json")
    assert cost.returncode == 0, cost.stderr
    priced = {g["key"]: g["dollars"] for g in json.loads(cost.stdout)["groups"]}
    assert priced == {j: world.job(j).price_at(NOW) / NANO for j in world.job_ids()}
    shown = _watcherd(config, "show", job_id, "--json")
    assert shown.returncode == 0, shown.stderr
    page = json.loads(shown.stdout)
    assert page["events"] == world.events(job_id)[-len(page["events"]) :] and page["events"]
    assert page["price"] == world.job(job_id).price / NANO


def test_resume_clears_the_pause_stored_in_postgresql(tmp_path: Path, pg_url: str) -> None:
    """`watcherd resume` on store.url lifts the shared pause (it looked for a SQLite file)."""

    async def store_pause() -> None:
        async with open_store(pg_url, writer=True) as store:
            await store.set_host_pause("127.0.0.1", time.time() + 600)

    async def pauses() -> dict[str, float]:
        async with open_store(pg_url, writer=False) as store:
            return await store.host_pauses()

    config = write_config(tmp_path, "http://127.0.0.1:9", [])
    config.write_text(config.read_text().replace("  path: watcherd.db\n", f"  url: '{pg_url}'\n"))
    anyio.run(store_pause, backend="asyncio")
    done = _watcherd(config, "resume")
    assert done.returncode == 0, done.stderr
    assert "127.0.0.1: cleared a pause until" in done.stdout
    assert anyio.run(pauses, backend="asyncio") == {}
