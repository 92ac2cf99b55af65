"""Restarts the service makes: the new job is watched, with a note and links both ways."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.cliharness import watcherd
from tests.daemonharness import API_KEY, start_daemon, stored, write_config
from tests.simharness import NOW
from watcherd.sim import ManualClock, World, run_in_thread
from watcherd.store import PollRecord
from watcherd.store.opening import open_store

#: One job the service restarted at step 15, long finished; its new job completed.
RESTARTED: dict[str, Any] = {
    "seed": 6,
    "jobs": [{"suffix": "restart", "created": "-2h", "steps": 40, "restart_at_step": 15}],
}


def _restarted(new: str) -> list[dict[str, Any]]:
    message = f"Job restarted as {new} from the checkpoint at step 15"
    return [{"created_at": "2026-05-19T13:00:00Z", "type": "JOB_RESTARTED", "message": message}]


@pytest.mark.anyio
async def test_store_watches_the_new_job_while_the_old_one_is(store_target: str | Path) -> None:
    """The new job is watched with a note pointing back, and stays so across re-syncs."""
    async with open_store(store_target, writer=True) as store:
        await store.sync_watched([("ft-old", "mine")], 1.0)
        rec = PollRecord("ft-old", 5.0, None, "error", events=_restarted("ft-new"))
        assert (await store.record_poll(rec)).restarts == ("ft-new",)
        await store.sync_watched([("ft-old", "mine")], 6.0)
        jobs = {j.job_id: j for j in await store.overview()}
        assert set(jobs) == {"ft-old", "ft-new"}
        assert (jobs["ft-new"].note, jobs["ft-new"].restart_of) == ("restart of ft-old", "ft-old")
        assert jobs["ft-old"].restarted_as == "ft-new"
        await store.sync_watched([], 7.0)  # the old one removed: its restart goes too
        assert await store.overview() == []


@pytest.mark.timeout(120)
def test_daemon_follows_a_restart_to_its_end(tmp_path: Path) -> None:
    """Watching only the old job, `run --until-done` also records the new job to completion."""
    world = World(RESTARTED, clock=ManualClock(NOW))
    old, new = world.job_ids()
    with run_in_thread(world, api_key=API_KEY) as sim:
        config = write_config(tmp_path, sim.base_url, [old])
        code = start_daemon(config, "--until-done").wait(timeout=90)
        assert code == 0, (tmp_path / "daemon.log").read_text()[-3000:]
    data = stored(tmp_path / "watcherd.db")
    assert data["status"] == {old: "error", new: "completed"}
    assert data["events"][new] == world.events(new)
    shown = json.loads(watcherd(config, "show", old, "--json").stdout)
    assert shown["restarted_as"] == new and "at step 15" in shown["reason"]
    lines = watcherd(config, "show", new, env={"COLUMNS": "160"}).stdout.splitlines()
    assert any(line.split()[:3] == ["restart", "of", old] for line in lines if line.strip())
    listed = json.loads(watcherd(config, "list", "--json").stdout)
    assert [(j["job_id"], j["note"]) for j in listed] == [(old, None), (new, f"restart of {old}")]
