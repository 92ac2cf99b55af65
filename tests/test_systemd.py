"""sd_notify over a real AF_UNIX datagram socket; inert outside systemd."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from watcherd.systemd import Notifier


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A bound datagram socket in tmp_path and its NOTIFY_SOCKET value."""
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(5)
        yield sock, str(path)


def _env(address: str, **extra: str) -> dict[str, str]:
    """An environment as systemd sets it."""
    return {"NOTIFY_SOCKET": address, "PATH": "/usr/bin", **extra}


def test_messages_reach_the_socket(listener: tuple[socket.socket, str]) -> None:
    """ready, status, stopping and watchdog arrive as KEY=value datagrams."""
    sock, address = listener
    env = _env(address, WATCHDOG_USEC="3000000", WATCHDOG_PID=str(os.getpid()))
    with Notifier.from_environment(env) as notifier:
        assert notifier.enabled and notifier.watchdog_interval == 1.5
        notifier.ready("watching 3 jobs")
        notifier.status("two\nlines")
        notifier.watchdog()
        notifier.stopping()
    received = [sock.recv(4096) for _ in range(4)]
    assert received == [
        b"READY=1\nSTATUS=watching 3 jobs",
        b"STATUS=two lines",
        b"WATCHDOG=1",
        b"STOPPING=1",
    ]


def test_reloading_carries_monotonic_time(listener: tuple[socket.socket, str]) -> None:
    """reloading() sends RELOADING=1 with MONOTONIC_USEC, as systemd 253+ expects."""
    sock, address = listener
    with Notifier.from_environment(_env(address)) as notifier:
        notifier.reloading()
    first, second = sock.recv(4096).decode().split("\n")
    assert first == "RELOADING=1"
    key, value = second.split("=")
    assert key == "MONOTONIC_USEC" and abs(int(value) / 1e6 - time.monotonic()) < 60


def test_abstract_socket() -> None:
    """An `@name` NOTIFY_SOCKET is the abstract-namespace socket `\\0name`."""
    name = f"watcherd-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(5)
        with Notifier.from_environment(_env("@" + name)) as notifier:
            notifier.ready()
        assert sock.recv(4096) == b"READY=1"


def test_environment_is_scrubbed() -> None:
    """NOTIFY_SOCKET and WATCHDOG_* are removed from the mapping read."""
    env = _env("@x", WATCHDOG_USEC="1000", WATCHDOG_PID="1")
    Notifier.from_environment(env).close()
    assert env == {"PATH": "/usr/bin"}


def test_children_never_see_systemd_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """After from_environment() on os.environ, a child process sees none of the variables."""
    monkeypatch.setenv("NOTIFY_SOCKET", "@watcherd-test-none")
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")
    Notifier.from_environment().close()
    code = "import os; print(sorted(k for k in os.environ if 'NOTIFY' in k or 'WATCHDOG' in k))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_inert_outside_systemd() -> None:
    """Without NOTIFY_SOCKET every call is a silent no-op."""
    notifier = Notifier.from_environment({"PATH": "/usr/bin"})
    assert not notifier.enabled and notifier.watchdog_interval is None
    notifier.ready("x")
    notifier.watchdog()
    notifier.reloading()


def test_watchdog_for_another_process_is_ignored() -> None:
    """WATCHDOG_PID naming another process disables our watchdog pings."""
    notifier = Notifier.from_environment(_env("@x", WATCHDOG_USEC="1000000", WATCHDOG_PID="1"))
    assert notifier.watchdog_interval is None
    notifier.close()


def test_send_failure_is_logged_not_raised(tmp_path: Path) -> None:
    """A socket nobody listens on gives a log line, never an exception."""
    notifier = Notifier.from_environment(_env(str(tmp_path / "gone.sock")))
    with capture_logs() as logs:
        notifier.ready()
    assert [entry["event"] for entry in logs] == ["systemd.notify_failed"]
    notifier.close()
