"""The real daemon and a Retry-After pause: kept across a stop or a kill, capped, cleared."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import pytest

from tests.daemonharness import cli, start_daemon, stop, wait_until, write_config
from watcherd.sim import RequestRecord, SimServer, World, run_in_thread
from watcherd.store import Store

#: Two jobs that stay queued: every round is one list request, nothing finishes.
QUEUED = {"seed": 2, "jobs": [{"count": 2, "created": "-1m", "stay": "queued"}]}
HOST = "127.0.0.1"


def limited(log: list[RequestRecord]) -> list[RequestRecord]:
    """The requests answered with a Retry-After."""
    return [r for r in log if r.retry_at is not None]


def store_pause(db: Path, until: float) -> None:
    """Leave a pause in the database, as an earlier daemon (or an older watcherd) would."""

    async def write() -> None:
        async with Store.open(db, writer=True) as store:
            await store.set_host_pause(HOST, until)

    anyio.run(write, backend="asyncio")


def stored_pauses(db: Path) -> dict[str, float]:
    """The pauses in the database now."""

    async def read() -> dict[str, float]:
        async with Store.open(db, writer=False) as store:
            return await store.host_pauses()

    return anyio.run(read, backend="asyncio")


def first_request_after(sim: SimServer, moment: float, timeout: float) -> RequestRecord | None:
    """The first request the sim logged after `moment`, waiting up to `timeout` s for one."""

    def found() -> RequestRecord | None:
        return next((r for r in sim.stats.snapshot() if r.time > moment), None)

    wait_until(lambda: found() is not None, timeout)
    return found()


@contextmanager
def held_an_hour(
    tmp_path: Path,
) -> Iterator[tuple[SimServer, Path, subprocess.Popen[bytes]]]:
    """A daemon started under a stored hour's pause and held by it (its poller runs, so a
    SIGHUP is handled by then); stopped with exit 0 on the way out."""
    world = World(QUEUED)
    with run_in_thread(world) as sim:
        config = write_config(tmp_path, sim.base_url, world.job_ids())
        store_pause(tmp_path / "watcherd.db", time.time() + 3000)
        log = tmp_path / "daemon.log"
        proc = start_daemon(config, log=log)
        try:
            assert wait_until(lambda: "poll.failed" in log.read_text(), 30)
            assert "api.pause_restored" in log.read_text()
            yield sim, config, proc
        finally:
            assert stop(proc) == 0


@pytest.mark.timeout(90)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["stop", "kill"])
def test_a_pause_survives_a_stop_or_a_kill(tmp_path: Path, sig: signal.Signals) -> None:
    """Stopped or killed half a second after a 429 asking for 6 s: the restarted daemon
    sends nothing before those 6 s are over."""
    world = World(QUEUED)
    with run_in_thread(world, faults="429=1,retry-after=6") as sim:
        config = write_config(tmp_path, sim.base_url, world.job_ids())
        proc = start_daemon(config)
        assert wait_until(lambda: limited(sim.stats.snapshot()), 30)
        time.sleep(0.5)  # the daemon read the 429; a kill now lands before any status loop
        stop(proc, sig)
        stopped = time.time()
        resume_at = max(r.retry_at or 0.0 for r in sim.stats.snapshot())
        proc = start_daemon(config)
        try:
            first = first_request_after(sim, stopped, timeout=30)
        finally:
            stop(proc)
    assert first is not None, "the restarted daemon never polled"
    assert first.time >= resume_at, f"{resume_at - first.time:.2f}s inside the pause"


@pytest.mark.timeout(60)
def test_an_absurd_stored_pause_is_cut_to_the_cap_at_start(tmp_path: Path) -> None:
    """A pause of 1e300 left in the database: the daemon cuts it to max_retry_after (2 s),
    says so, stores the cut time and polls once it is over."""
    world = World(QUEUED)
    with run_in_thread(world) as sim:
        config = write_config(
            tmp_path, sim.base_url, world.job_ids(), api_extra="  max_retry_after: 2s\n"
        )
        store_pause(tmp_path / "watcherd.db", 1e300)
        started = time.time()
        proc = start_daemon(config)
        try:
            first = first_request_after(sim, started, timeout=30)
            pauses = stored_pauses(tmp_path / "watcherd.db")
        finally:
            assert stop(proc) == 0
    events = [json.loads(line) for line in (tmp_path / "daemon.log").read_text().splitlines()]
    capped = [e for e in events if e["event"] == "api.retry_after_capped"]
    assert first is not None and first.time >= started + 2.0
    assert len(capped) == 1 and capped[0]["stored"] == 1e300
    assert pauses[HOST] <= first.time


@pytest.mark.timeout(60)
def test_resume_then_reload_lifts_a_pause(tmp_path: Path) -> None:
    """An hour's pause: `watcherd resume` clears it from the database, and the running
    daemon polls again once reloaded."""
    with held_an_hour(tmp_path) as (sim, config, proc):
        said = cli(config, "resume").stdout
        assert stored_pauses(tmp_path / "watcherd.db") == {}
        assert sim.stats.total == 0
        reloaded = time.time()
        proc.send_signal(signal.SIGHUP)
        first = first_request_after(sim, reloaded, timeout=15)
    assert f"{HOST}: cleared a pause until" in said and "reload" in said
    assert first is not None
    assert "no Retry-After pause is stored" in cli(config, "resume").stdout


@pytest.mark.timeout(60)
def test_a_reload_cuts_a_pause_to_a_lowered_cap(tmp_path: Path) -> None:
    """An hour's pause, then max_retry_after lowered to 1 s and SIGHUP: polling resumes."""
    with held_an_hour(tmp_path) as (sim, config, proc):
        text = config.read_text().replace("api:\n", "api:\n  max_retry_after: 1s\n", 1)
        config.write_text(text)
        reloaded = time.time()
        proc.send_signal(signal.SIGHUP)
        first = first_request_after(sim, reloaded, timeout=15)
        pauses = stored_pauses(tmp_path / "watcherd.db")
    assert first is not None
    assert pauses[HOST] <= reloaded + 1.5
