"""The real daemon under a fake systemd: sd_notify datagrams on a real AF_UNIX socket."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.daemonharness import API_KEY, big_scenario, daemon_env, start_daemon, write_config
from watcherd.sim import World, run_in_thread

JOB = "ft-notify-0001"
FAILING_HOOK = (
    "hooks:\n  - name: broken\n"
    f'    command: ["{sys.executable}", "-c", "raise SystemExit(3)"]\n'
    "    max_attempts: 1\n"
)


class Systemd:
    """The notify socket's end: every datagram the daemon sent, in order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[dict[str, str]] = []

    def wait_for(
        self, test: Callable[[dict[str, str]], bool], timeout: float = 15
    ) -> dict[str, str]:
        """Receive until a message passes `test`; return it (AssertionError on timeout)."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(4096).decode()
            except TimeoutError:
                break
            message = dict(line.split("=", 1) for line in data.split("\n"))
            self.messages.append(message)
            if test(message):
                return message
        raise AssertionError(f"no such message; got {self.messages[-5:]}")

    def status(self, needle: str, timeout: float = 15) -> str:
        """Wait for a STATUS= line containing `needle`."""
        return self.wait_for(lambda m: needle in m.get("STATUS", ""), timeout)["STATUS"]

    def start(self, config: Path, *args: str, key: str = API_KEY) -> subprocess.Popen[bytes]:
        """`watcherd run` with NOTIFY_SOCKET and a 1 s WatchdogSec pointing here."""
        env = daemon_env(
            {"NOTIFY_SOCKET": str(self.path), "WATCHDOG_USEC": "1000000", "WATCHERD_TEST_KEY": key}
        )
        with config.with_name("daemon.log").open("ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "watcherd", "run", "--config", str(config), *args],
                stdout=subprocess.DEVNULL,
                stderr=log,
                env=env,
                cwd=config.parent,
            )


@pytest.fixture
def systemd(tmp_path: Path) -> Iterator[Systemd]:
    """A bound notify socket in tmp_path."""
    assert len(str(tmp_path / "n.sock")) < 100, "AF_UNIX paths are short"
    fake = Systemd(tmp_path / "n.sock")
    yield fake
    fake.sock.close()


@pytest.fixture
def daemons() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Daemons a test started; any still running at the end are killed."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def dead_port() -> int:
    """A loopback port where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_lifecycle_without_the_api(
    systemd: Systemd, tmp_path: Path, daemons: list[subprocess.Popen[bytes]]
) -> None:
    """READY=1 with nothing listening for the API; pings, status, reload and stop follow."""
    config = write_config(tmp_path, f"http://127.0.0.1:{dead_port()}", [JOB])
    daemons.append(proc := systemd.start(config))
    ready = systemd.wait_for(lambda m: "READY" in m)
    assert systemd.messages[0] is ready and ready["READY"] == "1"
    assert ready["STATUS"].startswith("1 jobs, 1 new")
    systemd.wait_for(lambda m: m.get("WATCHDOG") == "1", timeout=5)
    assert "1 backing off" in systemd.status("backing off")
    pings_before = sum(m.get("WATCHDOG") == "1" for m in systemd.messages)
    systemd.wait_for(lambda m: m.get("WATCHDOG") == "1", timeout=5)
    assert sum(m.get("WATCHDOG") == "1" for m in systemd.messages) > pings_before
    proc.send_signal(signal.SIGHUP)
    reloading = systemd.wait_for(lambda m: "RELOADING" in m)
    assert reloading["RELOADING"] == "1" and reloading["MONOTONIC_USEC"].isdigit()
    systemd.wait_for(lambda m: m.get("READY") == "1")
    proc.send_signal(signal.SIGTERM)
    systemd.wait_for(lambda m: m.get("STOPPING") == "1")
    assert proc.wait(timeout=20) == 0
    assert sum("READY" in m for m in systemd.messages) == 2
    assert sum("STOPPING" in m for m in systemd.messages) == 1


def test_status_names_a_refused_key(
    systemd: Systemd, tmp_path: Path, daemons: list[subprocess.Popen[bytes]]
) -> None:
    """A 401 from the API shows in STATUS= as a refused key, polling paused."""
    world = World(big_scenario(1, 50, speed=20))
    with run_in_thread(world, api_key=API_KEY) as sim:
        config = write_config(tmp_path, sim.base_url, world.job_ids())
        daemons.append(systemd.start(config, key="wrong-key"))
        line = systemd.status("API key refused")
    assert "API key refused (401), polling paused" in line


def test_status_says_rate_limited(
    systemd: Systemd, tmp_path: Path, daemons: list[subprocess.Popen[bytes]]
) -> None:
    """A 503 with Retry-After: 30 puts "rate limited" and the backoff in STATUS=."""
    world = World(big_scenario(2, 50, speed=20))
    with run_in_thread(world, api_key=API_KEY, faults="503=1,retry-after=30") as sim:
        config = write_config(tmp_path, sim.base_url, world.job_ids())
        daemons.append(systemd.start(config))
        line = systemd.status("rate limited")
    assert "2 jobs" in line and "2 backing off" in line


def test_dead_hooks_count_from_the_store(
    systemd: Systemd, tmp_path: Path, daemons: list[subprocess.Popen[bytes]]
) -> None:
    """A hook that died in an earlier run is counted in STATUS= by the next daemon."""
    world = World(big_scenario(1, 20, speed=200))
    with run_in_thread(world, api_key=API_KEY) as sim:
        config = write_config(tmp_path, sim.base_url, world.job_ids(), hooks=FAILING_HOOK)
        assert start_daemon(config, "--until-done").wait(timeout=60) == 1
        daemons.append(proc := systemd.start(config))
        ready = systemd.wait_for(lambda m: "READY" in m)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    assert ready["STATUS"] == "1 jobs, 1 done; 1 dead hooks"
