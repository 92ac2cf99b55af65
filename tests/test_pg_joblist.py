"""The shared job list on PostgreSQL: each host's jobs file adds to it, any CLI changes it,
and every daemon polls it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cliharness import FINISHED
from tests.daemonharness import API_KEY, daemon_env, start_daemon, stop, wait_until, write_config
from tests.simharness import NOW
from watcherd.sim import ManualClock, World, run_in_thread
from watcherd.store.postgres.core import PgStore


async def _watched(store: PgStore) -> set[str]:
    return {job.job_id for job in await store.overview()}


@pytest.mark.anyio
async def test_each_source_adds_its_own_changes_and_leaves_the_others_alone(
    pg_url: str,
) -> None:
    """Host A lists x and y, host B lists z: all three are watched. A dropping y unwatches
    y only; a job another host's CLI removed stays unwatched while A's file still lists it,
    and a line A adds later is watched."""
    async with PgStore.open(pg_url, writer=True) as store:
        await store.sync_watched([("ft-x", None), ("ft-y", "why")], 1.0, source="a")
        await store.sync_watched([("ft-z", None)], 1.0, source="b")
        assert await _watched(store) == {"ft-x", "ft-y", "ft-z"}
        await store.sync_watched([("ft-x", None)], 2.0, source="a")
        assert await _watched(store) == {"ft-x", "ft-z"}
        await store.change_watched([], ["ft-x"], 3.0)  # `watcherd remove ft-x` on host B
        await store.sync_watched([("ft-x", None)], 4.0, source="a")  # A's file unchanged
        assert await _watched(store) == {"ft-z"}
        await store.sync_watched([("ft-x", None), ("ft-w", "new")], 5.0, source="a")
        assert await _watched(store) == {"ft-z", "ft-w"}
        notes = {job.job_id: job.note for job in await store.overview()}
        assert notes["ft-w"] == "new"


def _watcherd(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "watcherd", *args, "--config", str(config)]
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=60, check=False, env=daemon_env()
    )


def _host(folder: Path, base_url: str, url: str, jobs: list[str]) -> Path:
    """One host's config on the shared database, with its own jobs file."""
    folder.mkdir()
    config = write_config(folder, base_url, jobs)
    store = f"  url: '{url}'\n  lease: 2s\n"
    config.write_text(config.read_text().replace("  path: watcherd.db\n", store))
    return config


def _listed(config: Path) -> dict[str, str | None]:
    """job id -> stored status of the watched jobs, as `watcherd list --json` shows them."""
    done = _watcherd(config, "list", "--json")
    if "no database yet" in done.stderr:  # the daemon has not created the tables yet
        return {}
    assert done.returncode == 0, done.stderr
    return {job["job_id"]: job["status"] for job in json.loads(done.stdout)}


def test_a_job_added_by_one_hosts_cli_is_polled_by_another_hosts_daemon(
    tmp_path: Path, pg_url: str
) -> None:
    """Daemon B runs; `watcherd add` on host A (its own jobs file, no daemon) puts a job in
    the shared list and B polls it. Daemon A, started then, keeps B's jobs watched, and
    `watcherd remove` on A unwatches a job only B's file lists."""
    world = World(dict(FINISHED), clock=ManualClock(NOW))
    first, second, third = world.job_ids()[:3]
    with run_in_thread(world, api_key=API_KEY) as sim:
        host_a = _host(tmp_path / "a", sim.base_url, pg_url, [first])
        host_b = _host(tmp_path / "b", sim.base_url, pg_url, [second])
        daemon_b = start_daemon(host_b, log=tmp_path / "b.log")
        daemons = [daemon_b]
        try:
            assert wait_until(lambda: _listed(host_b).get(second) is not None, 30)
            added = _watcherd(host_a, "add", third)
            assert added.returncode == 0, added.stderr
            assert f"{third}: now watched" in added.stdout
            assert wait_until(lambda: _listed(host_b).get(third) is not None, 30)
            daemons.append(start_daemon(host_a, log=tmp_path / "a.log"))
            assert wait_until(lambda: _listed(host_a).get(first) is not None, 30)
            assert set(_listed(host_a)) == {first, second, third}
            removed = _watcherd(host_a, "remove", second)
            assert f"{second}: no longer watched" in removed.stdout, removed.stderr
            assert set(_listed(host_b)) == {first, third}
        finally:
            codes = [stop(proc, signal.SIGTERM) for proc in daemons]
    assert codes == [0, 0], (tmp_path / "b.log").read_text()[-3000:]
    assert world.status_at(third) == _statuses(host_a)[third]


def _statuses(config: Path) -> dict[str, str | None]:
    """Stored statuses of every job, watched or not."""
    done = _watcherd(config, "list", "--all", "--json")
    return {job["job_id"]: job["status"] for job in json.loads(done.stdout)}
