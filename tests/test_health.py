"""`watcherd health` against the real daemon as a subprocess and the simulator on loopback."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemonharness import (
    API_KEY,
    big_scenario,
    daemon_env,
    stored,
    wait_until,
    write_config,
)
from watcherd.errors import StoreError
from watcherd.sim import World, run_in_thread

#: WatchdogSec=0.4 s makes the daemon publish its heartbeat every 0.2 s, so a stopped
#: daemon looks stale after 12 missed beats (2.4 s) instead of a minute.
FAST_HEARTBEAT = {"WATCHDOG_USEC": "400000"}


def health(config: Path) -> tuple[int, str]:
    """Run `watcherd health`; its exit code and its one line of output."""
    proc = subprocess.run(
        [sys.executable, "-m", "watcherd", "health", "--config", str(config)],
        capture_output=True,
        text=True,
        env=daemon_env(),
        timeout=30,
        check=False,
    )
    assert proc.stdout.count("\n") == 1, proc.stdout + proc.stderr
    return proc.returncode, proc.stdout.strip()


def said(config: Path, needle: str, timeout: float = 15) -> bool:
    """True once `health` reports a line containing `needle`."""
    return wait_until(lambda: needle in health(config)[1], timeout, interval=0.2)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Starts daemons on request (`start(...)` below); kills leftovers at the end."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
            proc.wait(timeout=10)


def start(
    started: list[subprocess.Popen[bytes]], config: Path, *args: str, key: str = API_KEY
) -> subprocess.Popen[bytes]:
    """`watcherd run` with a fast heartbeat and the given API key."""
    env = daemon_env({**FAST_HEARTBEAT, "WATCHERD_TEST_KEY": key})
    with config.with_name("daemon.log").open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "watcherd", "run", "--config", str(config), *args],
            stdout=subprocess.DEVNULL,
            stderr=log,
            env=env,
            cwd=config.parent,
        )
    started.append(proc)
    return proc


def test_no_database(tmp_path: Path) -> None:
    """Before the daemon ever ran: exit 1, naming the missing database."""
    config = write_config(tmp_path, "http://127.0.0.1:9", ["ft-none"])
    code, line = health(config)
    assert code == 1
    assert (
        line == f"unhealthy: no database at {tmp_path / 'watcherd.db'} (has the daemon ever run?)"
    )


def test_no_daemon_after_a_one_shot_run(tmp_path: Path) -> None:
    """A database whose lock nobody holds (after `run --once`): exit 1, no daemon."""
    world = World(big_scenario(1, 20, speed=200))
    with run_in_thread(world, api_key=API_KEY) as sim:
        config = write_config(tmp_path, sim.base_url, world.job_ids())
        subprocess.run(
            [sys.executable, "-m", "watcherd", "run", "--once", "--config", str(config)],
            env=daemon_env(),
            capture_output=True,
            timeout=60,
            check=True,
        )
    code, line = health(config)
    assert (code, line.split(" on ")[0]) == (1, "unhealthy: no daemon holds the lock")


def test_healthy_then_stale_when_stopped(
    tmp_path: Path, daemon: list[subprocess.Popen[bytes]]
) -> None:
    """ok while the daemon polls; stopped (SIGSTOP), it holds the lock but its heartbeat ages."""
    world = World(big_scenario(2, 5000, speed=20))
    with run_in_thread(world, api_key=API_KEY) as sim:
        config = write_config(tmp_path, sim.base_url, world.job_ids())
        proc = start(daemon, config)
        assert wait_until(lambda: health(config) == (0, "ok"), 20, interval=0.2)
        proc.send_signal(signal.SIGSTOP)
        try:
            assert said(config, "heartbeat is stale", timeout=10)
            code, line = health(config)
            assert code == 1 and line.startswith("unhealthy: the daemon's heartbeat is stale")
        finally:
            proc.send_signal(signal.SIGCONT)
        assert wait_until(lambda: health(config) == (0, "ok"), 10, interval=0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0


def test_no_successful_poll_yet(tmp_path: Path, daemon: list[subprocess.Popen[bytes]]) -> None:
    """A running daemon that cannot reach the API is unhealthy: no successful poll yet."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = write_config(tmp_path, f"http://127.0.0.1:{port}", ["ft-unreachable"])
    start(daemon, config)
    assert said(config, "backing off")
    code, line = health(config)
    assert code == 1
    assert line == "unhealthy: no successful poll yet (1 jobs, 1 new; 1 backing off)"


def test_refused_key(tmp_path: Path, daemon: list[subprocess.Popen[bytes]]) -> None:
    """A key the API refuses makes health fail with the reason, polling paused."""
    world = World(big_scenario(1, 500, speed=20))
    with run_in_thread(world, api_key=API_KEY) as sim:
        config = write_config(tmp_path, sim.base_url, world.job_ids())
        start(daemon, config, key="wrong-key")
        assert said(config, "API key refused")
        code, line = health(config)
    assert code == 1
    assert line.startswith(
        "unhealthy: API key refused (401); polling is paused until the key works"
    )


def test_idle_daemon_with_finished_jobs_is_healthy(
    tmp_path: Path, daemon: list[subprocess.Popen[bytes]]
) -> None:
    """Once every job is terminal no poll is due, so an ever older last poll stays healthy."""
    world = World(big_scenario(1, 20, speed=200))
    poll = "{interval: 0.3s, min_interval: 0.1s, max_backoff: 0.5s}"
    with run_in_thread(world, api_key=API_KEY) as sim:
        config = write_config(tmp_path, sim.base_url, world.job_ids(), poll=poll)
        start(daemon, config)
        db = tmp_path / "watcherd.db"
        assert wait_until(lambda: db.exists() and _all_done(db), 30, interval=0.2)
    # No API now: a live job would fail health 3.3 s (0.9 s + 12 beats) after its last poll.
    assert not wait_until(lambda: health(config)[0] != 0, 4.0, interval=0.5)


def _all_done(db: Path) -> bool:
    """True once the database holds jobs and every one of them completed (False while the
    daemon is still creating it: a reader refuses a schema it has not finished upgrading)."""
    try:
        statuses = stored(db)["status"].values()
    except StoreError:
        return False
    return bool(statuses) and all(status == "completed" for status in statuses)
