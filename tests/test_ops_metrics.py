"""The Prometheus endpoint: the text format, the tiny server, and scrapes of the real daemon."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import anyio
import httpx
import pytest

from tests.daemonharness import API_KEY, big_scenario, start_daemon, stop, wait_until, write_config
from tests.lockstep import lockstep
from tests.simharness import NOW
from watcherd.api.client import ApiStats
from watcherd.api.latency import Histogram, LatencySnapshot
from watcherd.config import Listen, parse_listen
from watcherd.daemon.prometheus import CONTENT_TYPE, bind, render, serve
from watcherd.daemon.status import Snapshot
from watcherd.errors import ConfigError, WatcherdError
from watcherd.sim import ManualClock, World, run_in_thread

SAMPLE = re.compile(r'([a-z_]+)(\{(?:[a-z_]+="(?:[^"\\]|\\.)*",?)*\})? (\S+)')
Series = dict[str, float]
HOOK = (
    "hooks:\n  - name: sink\n"
    f'    command: ["{sys.executable}", "-c", "import sys; sys.stdin.read()"]\n'
)


def parse(text: str) -> Series:
    """`name{labels} value` lines as a dict; every line must be a comment or a sample."""
    series: Series = {}
    for line in text.splitlines():
        if line.startswith(("# HELP ", "# TYPE ")):
            continue
        match = SAMPLE.fullmatch(line)
        assert match is not None, f"not exposition format: {line!r}"
        series[match[1] + (match[2] or "")] = float(match[3])
    return series


def free_port() -> int:
    """A loopback port free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("value", ["127.0.0.1:9105", "127.8.9.10:1", "[::1]:9105", "localhost:80"])
def test_loopback_addresses_are_accepted(value: str) -> None:
    """Loopback IPv4, IPv6 and `localhost` are valid listen addresses."""
    assert str(parse_listen(value)) == value


@pytest.mark.parametrize("value", ["0.0.0.0:9105", "[::]:9105", "10.0.0.1:9105", "example.com:80"])
def test_other_addresses_are_refused(value: str) -> None:
    """Anything but loopback is a configuration error naming the key."""
    with pytest.raises(ConfigError, match=r"metrics_listen: .* is not a loopback address"):
        parse_listen(value)


def test_render_covers_the_snapshot() -> None:
    """Every snapshot field becomes a sample, labels escaped, all delivery states present."""
    snap = Snapshot(
        jobs={"running": 2, "completed": 1, 'we"ird\\': 1},
        backing_off=1,
        auth_error="API key refused (401)",
        paused_until=1700000000.5,
        deliveries={"dead": 2},
        polls=7,
        poll_errors=3,
        last_success_at=1699999999.25,
        api=ApiStats(12, 4, {"200": 9, "503": 2, "UnavailableError": 1}, _latency()),
        spend={"day": 1.5, "month": 12.25, "all": 40.0},
    )
    series = parse(render(snap, started_at=1690000000.0))
    assert series['watcherd_spend_dollars{period="day"}'] == 1.5
    assert series['watcherd_spend_dollars{period="month"}'] == 12.25
    assert series['watcherd_jobs{status="running"}'] == 2
    assert series['watcherd_jobs{status="we\\"ird\\\\"}'] == 1
    assert series["watcherd_jobs_backing_off"] == 1
    assert series["watcherd_polls_total"] == 7 and series["watcherd_poll_errors_total"] == 3
    assert series['watcherd_api_requests_total{code="503"}'] == 2
    assert series['watcherd_api_requests_total{code="UnavailableError"}'] == 1
    assert series["watcherd_api_retries_total"] == 4
    assert series['watcherd_api_request_duration_seconds_bucket{le="0.01"}'] == 1
    assert series['watcherd_api_request_duration_seconds_bucket{le="0.5"}'] == 2
    assert series['watcherd_api_request_duration_seconds_bucket{le="+Inf"}'] == 3
    assert series["watcherd_api_request_duration_seconds_count"] == 3
    assert series["watcherd_api_request_duration_seconds_sum"] == pytest.approx(40.51)
    assert series["watcherd_api_auth_failing"] == 1
    assert series["watcherd_api_paused_until_seconds"] == 1700000000.5
    assert series['watcherd_hook_deliveries{state="dead"}'] == 2
    assert series['watcherd_hook_deliveries{state="delivered"}'] == 0
    assert series["watcherd_last_successful_poll_timestamp_seconds"] == 1699999999.25
    assert series["watcherd_start_time_seconds"] == 1690000000


def _latency() -> LatencySnapshot:
    """Three attempts: 10 ms (on a bucket bound), 0.5 s and 40 s (past every bound)."""
    histogram = Histogram()
    for seconds in (0.01, 0.5, 40.0):
        histogram.observe(seconds)
    return histogram.snapshot()


@asynccontextmanager
async def served(body: str) -> AsyncIterator[int]:
    """The server on a free loopback port answering with `body`; yields the port."""

    async def collect() -> str:
        return body

    listener = await bind(Listen("127.0.0.1", 0))
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with anyio.create_task_group() as tg:
        tg.start_soon(serve, listener, collect)
        yield port
        tg.cancel_scope.cancel()


async def exchange(port: int, request: bytes) -> bytes:
    """Send raw bytes, read the whole answer until the server closes."""
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(request)
        chunks = []
        with pytest.raises(anyio.EndOfStream):
            while True:
                chunks.append(await stream.receive())
        return b"".join(chunks)


@pytest.mark.anyio
async def test_server_routes_and_closes() -> None:
    """GET /metrics is 200 in format 0.0.4; other paths 404, other methods 405, junk 400."""
    async with served("up 1\n") as port:
        ok = await exchange(port, b"GET /metrics?x=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await exchange(port, b"HEAD /metrics HTTP/1.0\r\n\r\n")
        missing = await exchange(port, b"GET / HTTP/1.1\r\n\r\n")
        post = await exchange(port, b"POST /metrics HTTP/1.1\r\n\r\n")
        junk = await exchange(port, b"\x16\x03\x01 hello\r\n\r\n")
    assert ok.startswith(b"HTTP/1.0 200 OK\r\n") and ok.endswith(b"\r\n\r\nup 1\n")
    assert f"Content-Type: {CONTENT_TYPE}\r\n".encode() in ok
    assert b"Content-Length: 5\r\n" in head and head.endswith(b"\r\n\r\n")
    assert missing.startswith(b"HTTP/1.0 404 ")
    assert post.startswith(b"HTTP/1.0 405 ") and b"Allow: GET, HEAD" in post
    assert junk.startswith(b"HTTP/1.0 400 ")


@pytest.mark.anyio
async def test_idle_connections_cannot_starve_a_scrape() -> None:
    """20 idle loopback connections: a scrape still answers within 2 s, not after ~10 s."""
    async with served("up 1\n") as port, AsyncExitStack() as idle:
        for _ in range(20):
            await idle.enter_async_context(await anyio.connect_tcp("127.0.0.1", port))
        started = anyio.current_time()
        with anyio.fail_after(2):
            answer = await exchange(port, b"GET /metrics HTTP/1.1\r\n\r\n")
    assert answer.startswith(b"HTTP/1.0 200 OK\r\n")
    assert anyio.current_time() - started < 2


@pytest.mark.anyio
async def test_a_connection_that_sends_no_request_is_closed_soon() -> None:
    """A client that connects and says nothing is closed after the head deadline (1 s)."""
    async with served("up 1\n") as port, await anyio.connect_tcp("127.0.0.1", port) as quiet:
        started = anyio.current_time()
        with anyio.fail_after(3), pytest.raises(anyio.EndOfStream):
            await quiet.receive()
    assert 0.5 < anyio.current_time() - started < 2.5


@pytest.mark.anyio
async def test_a_busy_port_is_a_clear_error() -> None:
    """Binding an address in use raises our error, naming the address."""
    async with served("") as port:
        with pytest.raises(WatcherdError, match=f"metrics_listen 127.0.0.1:{port}: cannot listen"):
            await bind(Listen("127.0.0.1", port))


def test_non_loopback_config_stops_the_daemon(tmp_path: Path) -> None:
    """`metrics_listen: 0.0.0.0:...` makes `watcherd run` exit 78 before doing anything."""
    config = write_config(
        tmp_path, "http://127.0.0.1:9", ["ft-x"], hooks="metrics_listen: 0.0.0.0:9105\n"
    )
    assert start_daemon(config).wait(timeout=30) == 78
    assert "is not a loopback address" in (tmp_path / "daemon.log").read_text()
    assert not (tmp_path / "watcherd.db").exists()


def scrape(port: int) -> Series:
    """GET /metrics from the daemon, parsed."""
    response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE
    return parse(response.text)


def test_scrapes_of_a_running_daemon_move(tmp_path: Path) -> None:
    """While jobs run, polls, API 200s and job states move; hooks and spend show.

    The sim's clock stands still until the first scrape, then moves in step with the
    daemon (`lockstep`), so the first scrape is taken before any job finished."""
    port = free_port()
    clock = ManualClock(NOW)
    world = World(big_scenario(2, 300, speed=100), clock=clock)
    with run_in_thread(world, api_key=API_KEY) as sim:
        extra = f"metrics_listen: 127.0.0.1:{port}\n{HOOK}"
        config = write_config(tmp_path, sim.base_url, world.job_ids(), hooks=extra)
        proc: subprocess.Popen[bytes] = start_daemon(config)
        try:
            assert wait_until(lambda: _scrape_or_none(port) is not None, 15)
            first = scrape(port)
            with lockstep(world, clock, tmp_path / "watcherd.db", 50.0):
                assert wait_until(lambda: _delivered(scrape(port)) == 2, 60)
            last = scrape(port)
        finally:
            assert stop(proc, signal.SIGTERM) == 0
    assert first.get('watcherd_jobs{status="completed"}', 0) < 2
    assert last["watcherd_polls_total"] > first["watcherd_polls_total"]
    ok_before = first.get('watcherd_api_requests_total{code="200"}', 0)
    assert last['watcherd_api_requests_total{code="200"}'] > ok_before
    assert last["watcherd_last_successful_poll_timestamp_seconds"] > 0
    count = last["watcherd_api_request_duration_seconds_count"]
    assert count > first["watcherd_api_request_duration_seconds_count"]
    assert last['watcherd_api_request_duration_seconds_bucket{le="+Inf"}'] == count
    assert last["watcherd_jobs_backing_off"] == 0 and last["watcherd_api_auth_failing"] == 0
    prices = sum(world.job(j).price for j in world.job_ids()) / 1e9
    assert last['watcherd_spend_dollars{period="all"}'] == pytest.approx(prices)
    assert {
        'watcherd_spend_dollars{period="day"}',
        'watcherd_spend_dollars{period="month"}',
    } <= set(last)


def _delivered(series: Series) -> float:
    """Hook deliveries delivered, counted once both jobs completed (0 before)."""
    done = series.get('watcherd_jobs{status="completed"}') == 2
    return series['watcherd_hook_deliveries{state="delivered"}'] if done else 0


def _scrape_or_none(port: int) -> Series | None:
    """A scrape, or None while the daemon does not listen yet."""
    try:
        return scrape(port)
    except httpx.TransportError:
        return None
