"""The real daemon, as a subprocess, against the simulator on loopback."""

from __future__ import annotations

import functools
import json
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.battery.test_stop_loop import started_count, up
from tests.daemonharness import (
    API_KEY,
    assert_exact,
    big_scenario,
    cli,
    start_daemon,
    stop,
    stored,
    wait_until,
    write_config,
)
from tests.lockstep import lockstep
from tests.simharness import NOW
from watcherd.sim import ManualClock, SimServer, World, run_in_thread

#: Sim seconds per step of the lockstep clock: shorter than the shortest phase (600 s).
STEP = 200.0
#: The SIGKILL loop's kills; then the last daemon runs to the end.
KILLS = 8
#: `watcherd add` promises polling "within about a second"; a loaded machine gets more.
ADD_TO_POLL = 5.0

HOOK = (
    "hooks:\n  - name: sink\n"
    f'    command: ["{sys.executable}", "-c", "import sys; sys.stdin.read()"]\n'
    "    timeout: 10s\n"
)


def _scenario(jobs: int, steps: int, seed: int) -> dict[str, object]:
    scenario = big_scenario(jobs, steps, seed=seed)
    for phase in ("pending", "queue", "compress", "upload"):
        scenario["jobs"][0][phase] = 3 * 200
    scenario["jobs"][0] |= {"n_epochs": 4, "n_checkpoints": 5}  # events while training
    return scenario


@pytest.mark.timeout(180)
def test_until_done_stores_the_exact_history(tmp_path: Path) -> None:
    """50 jobs x 2,000 steps, `run --until-done`: rows equal the truth, transitions in order
    (the sim's clock moves only once the daemon recorded every job's status: `lockstep`)."""
    clock = ManualClock(NOW)
    world = World(_scenario(50, 2000, seed=11), clock=clock)
    with run_in_thread(world, api_key=API_KEY) as sim:
        config = write_config(tmp_path, sim.base_url, world.job_ids())
        with lockstep(world, clock, tmp_path / "watcherd.db", STEP):
            proc = start_daemon(config, "--until-done")
            assert proc.wait(timeout=150) == 0, (tmp_path / "daemon.log").read_text()[-3000:]
    data = stored(tmp_path / "watcherd.db")
    assert_exact(world, data["metrics"])
    for job_id in world.job_ids():
        seen = [t.to_status for t in data["transitions"][job_id]]
        assert seen == [status for _, status in world.transitions(job_id)], job_id
        assert data["events"][job_id] == world.events(job_id), job_id
    assert data["integrity"] == "ok"


@pytest.mark.timeout(180)
def test_polling_again_or_restarting_adds_nothing(tmp_path: Path) -> None:
    """After every job is done, `run --once` twice and a restart leave the database as it was."""
    world = World(_scenario(3, 300, seed=12))
    with run_in_thread(world, api_key=API_KEY) as sim:
        config = write_config(tmp_path, sim.base_url, world.job_ids(), hooks=HOOK)
        assert start_daemon(config, "--until-done").wait(timeout=60) == 0
        before = stored(tmp_path / "watcherd.db")
        for _ in range(2):
            assert start_daemon(config, "--once").wait(timeout=60) == 0
        assert start_daemon(config, "--until-done").wait(timeout=60) == 0
    after = stored(tmp_path / "watcherd.db")
    assert after["metrics"] == before["metrics"] or _same_rows(after, before)
    assert after["transitions"] == before["transitions"]
    assert [(d.id, d.attempts, d.state) for d in after["deliveries"]] == [
        (d.id, d.attempts, d.state) for d in before["deliveries"]
    ]


@pytest.mark.timeout(120)
def test_run_once_exits_1_when_no_job_could_be_polled(tmp_path: Path) -> None:
    """`run --once` (for cron) exits 1 when the key is refused or every poll failed,
    and 0 when the jobs were polled."""
    world = World(_scenario(2, 300, seed=13))
    with run_in_thread(world, api_key="another-key") as sim:
        config = write_config(tmp_path, sim.base_url, world.job_ids(), timeout="1s")
        assert start_daemon(config, "--once").wait(timeout=60) == 1
    with run_in_thread(world, api_key=API_KEY) as sim:
        write_config(tmp_path, sim.base_url, world.job_ids())
        assert start_daemon(config, "--once").wait(timeout=60) == 0
    write_config(tmp_path, sim.base_url, world.job_ids(), timeout="1s")  # nobody listens now
    assert start_daemon(config, "--once").wait(timeout=60) == 1
    failed = [e for e in _log_events(tmp_path / "daemon.log") if e["event"] == "daemon.once_failed"]
    assert [e["reason"] for e in failed] == [
        "API key refused (401)",
        "no job could be polled",
    ]


def _log_events(log: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


def _same_rows(a: dict[str, object], b: dict[str, object]) -> bool:
    return repr(a["metrics"]) == repr(b["metrics"])


@pytest.mark.timeout(240)
def test_sigkill_loop_keeps_the_history_exact(tmp_path: Path) -> None:
    """SIGKILL at random moments after start-up (KILLS times), then run to the end:
    exact rows and events, one delivery per job."""
    seed = random.randrange(1 << 30)
    print(f"kill loop seed {seed}")
    rng = random.Random(seed)
    world = World(_scenario(20, 1000, seed=seed % 1000))
    log, kills = tmp_path / "daemon.log", 0
    with run_in_thread(world, api_key=API_KEY) as sim:
        config = write_config(tmp_path, sim.base_url, world.job_ids(), hooks=HOOK)
        while True:
            before = started_count(log)
            proc = start_daemon(config, "--until-done", log=log)
            try:
                assert wait_until(functools.partial(up, log, before, proc), 30)
                code = proc.wait(timeout=rng.uniform(0.5, 3.0) if kills < KILLS else 150)
            except subprocess.TimeoutExpired:
                kills += 1
                continue
            finally:
                stop(proc, signal.SIGKILL)
            assert code == 0, log.read_text()[-3000:]
            break
    data = stored(tmp_path / "watcherd.db")
    assert kills > 0
    assert data["integrity"] == "ok"
    assert_exact(world, data["metrics"])
    for job_id in world.job_ids():  # an events fetch cut by a kill stored nothing twice
        assert data["events"][job_id] == world.events(job_id), job_id
    ids = sorted(d.id for d in data["deliveries"])
    assert ids == sorted(f"{j}:completed:sink" for j in world.job_ids())
    assert all(d.state == "delivered" for d in data["deliveries"])


@pytest.mark.timeout(60)
def test_sighup_with_a_broken_config_keeps_the_old_one(tmp_path: Path) -> None:
    """SIGHUP with a broken config: still running on the old one, error logged with file:line."""
    world = World(_scenario(2, 100000, seed=13))
    with run_in_thread(world, api_key=API_KEY) as sim:
        config = write_config(tmp_path, sim.base_url, world.job_ids())
        log = tmp_path / "daemon.log"
        proc = start_daemon(config, log=log)
        try:
            assert wait_until(lambda: "daemon.started" in log.read_text(), 15)
            # The poller starts once the signal handlers are in place (as READY=1 does): a
            # SIGHUP sent between `daemon.started` and then would meet the inherited disposition.
            assert wait_until(lambda: sim.stats.total > 0, 15)
            good = config.read_text()
            config.write_text(good.replace("{interval: 0.3s", "{interval: soon"))
            proc.send_signal(signal.SIGHUP)
            assert wait_until(lambda: "config.reload_failed" in log.read_text(), 10)
            requests_before = sim.stats.total
            assert wait_until(lambda: sim.stats.total >= requests_before + 3, 10)
            assert proc.poll() is None
        finally:
            assert stop(proc) == 0
    line = next(json.loads(x) for x in log.read_text().splitlines() if "reload_failed" in x)
    assert f"{config}:" in line["error"] and "poll.interval" in line["error"]


def first_request_for(sim: SimServer, job_id: str) -> float | None:
    """When the sim first read a request naming `job_id` (wall clock), if it has."""
    return next((r.time for r in sim.stats.snapshot() if job_id in r.path), None)


@pytest.mark.timeout(60)
def test_add_while_running_is_polled_within_seconds(tmp_path: Path) -> None:
    """`watcherd add` while the daemon runs: its first sighting of the new job, as the daemon
    recorded it, comes within ADD_TO_POLL seconds of the jobs file changing; `list` shows it."""
    world = World(_scenario(2, 100000, seed=14), clock=ManualClock(NOW))  # both stay pending
    first, second = world.job_ids()
    with run_in_thread(world, api_key=API_KEY) as sim:
        config = write_config(tmp_path, sim.base_url, [first])
        proc = start_daemon(config)
        try:
            assert wait_until(lambda: first_request_for(sim, first) is not None, 15)
            cli(config, "add", second, "--note", "late")
            added = (tmp_path / "jobs.txt").stat().st_mtime

            def polled() -> dict[str, object] | None:
                listing = json.loads(cli(config, "list", "--json").stdout)
                return next((j for j in listing if j["job_id"] == second and j["status"]), None)

            assert wait_until(lambda: polled() is not None, 30)
            seen = polled()
            assert seen is not None and seen["note"] == "late"
            assert seen["status"] == "pending"
        finally:
            assert stop(proc) == 0
    sighted = stored(tmp_path / "watcherd.db")["transitions"][second][0]
    assert sighted.from_status is None and sighted.observed_at - added < ADD_TO_POLL
