"""An optional Prometheus endpoint: `GET /metrics` in the text format, version 0.0.4.

Turned on by `metrics_listen: 127.0.0.1:9105`; the daemon binds the socket before it
reports READY (a port in use fails the start) and serves it in its task group.

Loopback only, by decision: the endpoint has no authentication and no TLS, and job
counts, hook trouble and API error rates are nobody else's business. A host that is
not a loopback address (`127.0.0.0/8`, `::1`, or `localhost`) is a configuration
error. A Prometheus on another machine scrapes through a reverse proxy or an SSH
tunnel that adds what a public endpoint needs.

Why not `prometheus_client`: its registry is process-global and thread-locked, its
server runs in a thread beside our event loop, and it is one more dependency for a
few dozen lines of text. The daemon already holds every value in one `Snapshot`
(`watcherd.daemon.status`); `render` prints it, and a tiny anyio server answers one request
per connection, HTTP/1.0 style: the response, then close. The request head must come
within a second, and when all 16 connection slots are taken the oldest connection still
waiting for its head is dropped, so idle clients cannot hold a scrape back.

Counters (`*_total`) count since the daemon started; a reload that changes the `api:`
section starts a new API client, whose counters start again from zero (Prometheus'
`rate()` treats that as a counter reset).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

import anyio
import anyio.abc
import structlog

from watcherd import __version__
from watcherd.api.latency import LatencySnapshot
from watcherd.config import Listen
from watcherd.config.alerting import RULES
from watcherd.daemon.status import Snapshot
from watcherd.errors import WatcherdError
from watcherd.model import DeliveryState

log = structlog.get_logger("watcherd.daemon.prometheus")

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
#: A request head must arrive within this many seconds of the connection (Prometheus
#: sends it at once), so an idle connection holds a slot briefly.
HEAD_DEADLINE: Final = 1.0
#: A scrape must be answered within this many seconds of its connection.
REQUEST_DEADLINE: Final = 5.0
MAX_REQUEST_HEAD: Final = 8192
#: Connections open at once; when all are taken, the oldest still waiting for its
#: request head is dropped for the newcomer, so idle clients cannot starve a scrape.
MAX_CONNECTIONS: Final = 16

Collect = Callable[[], Awaitable[str]]
Sample = tuple[Mapping[str, str], float]


# -- the text format -----------------------------------------------------------


def render(snap: Snapshot, *, started_at: float) -> str:
    """The exposition text (format 0.0.4) of one snapshot."""
    out: list[str] = []
    jobs = [({"status": s}, float(n)) for s, n in sorted(snap.jobs.items())]
    _family(out, "watcherd_jobs", "gauge", "Watched jobs by status.", jobs)
    _gauge(out, "watcherd_jobs_backing_off", "Jobs whose last poll failed.", snap.backing_off)
    _counter(out, "watcherd_polls_total", "Polls recorded successfully.", snap.polls)
    _counter(out, "watcherd_poll_errors_total", "Polls that failed.", snap.poll_errors)
    codes = [({"code": c}, float(n)) for c, n in sorted(snap.api.outcomes.items())]
    help_codes = "API attempts by HTTP status, or error kind when no response came."
    _family(out, "watcherd_api_requests_total", "counter", help_codes, codes)
    _counter(out, "watcherd_api_retries_total", "API attempts that were retried.", snap.api.retries)
    help_latency = "Seconds per API attempt, body included."
    _histogram(out, "watcherd_api_request_duration_seconds", help_latency, snap.api.latency)
    _gauge(out, "watcherd_api_auth_failing", "1 while the API key is refused.", snap.auth_error)
    paused = snap.paused_until or 0.0
    _gauge(out, "watcherd_api_paused_until_seconds", "Host paused until (epoch; 0: not).", paused)
    hooks = [({"state": s}, float(snap.deliveries.get(s, 0))) for s in _states(snap.deliveries)]
    _family(out, "watcherd_hook_deliveries", "gauge", "Hook deliveries by state.", hooks)
    rules = [*RULES, *sorted(set(snap.alerts) - set(RULES))]
    alerts = [({"rule": r}, float(snap.alerts.get(r, 0))) for r in rules]
    help_alerts = "Open alert episodes of watched jobs, by rule."
    _family(out, "watcherd_alerts_open", "gauge", help_alerts, alerts)
    last = snap.last_success_at or 0.0
    help_last = "When a poll last succeeded (epoch seconds; 0: never)."
    _gauge(out, "watcherd_last_successful_poll_timestamp_seconds", help_last, last)
    _gauge(out, "watcherd_start_time_seconds", "When the daemon started (epoch).", started_at)
    if snap.spend:
        spend = [({"period": p}, dollars) for p, dollars in snap.spend.items()]
        help_spend = (
            "Dollars the jobs cost: created this UTC day, month, or ever (running ones so far)."
        )
        _family(out, "watcherd_spend_dollars", "gauge", help_spend, spend)
    info = [({"version": __version__}, 1.0)]
    _family(out, "watcherd_build_info", "gauge", "The running version.", info)
    return "".join(out)


def _states(counts: Mapping[str, int]) -> list[str]:
    return [*DeliveryState, *sorted(set(counts) - set(DeliveryState))]


def _gauge(out: list[str], name: str, help_: str, value: float | str | None) -> None:
    number = float(value) if isinstance(value, int | float) else float(value is not None)
    _family(out, name, "gauge", help_, [({}, number)])


def _counter(out: list[str], name: str, help_: str, value: int) -> None:
    _family(out, name, "counter", help_, [({}, float(value))])


def _histogram(out: list[str], name: str, help_: str, latency: LatencySnapshot) -> None:
    out.append(f"# HELP {name} {help_}\n# TYPE {name} histogram\n")
    buckets = [*((repr(le), n) for le, n in latency.buckets), ("+Inf", latency.count)]
    out.extend(f'{name}_bucket{{le="{le}"}} {n}\n' for le, n in buckets)
    out.append(f"{name}_sum {_number(latency.total)}\n{name}_count {latency.count}\n")


def _family(out: list[str], name: str, kind: str, help_: str, samples: Iterable[Sample]) -> None:
    out.append(f"# HELP {name} {help_}\n# TYPE {name} {kind}\n")
    for labels, value in samples:
        out.append(f"{name}{_labels(labels)} {_number(value)}\n")


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
    return "{" + inner + "}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


# -- the server ------------------------------------------------------------------


async def bind(listen: Listen) -> anyio.abc.Listener[anyio.abc.SocketStream]:
    """The listening socket; WatcherdError if the address cannot be bound."""
    try:
        return await anyio.create_tcp_listener(local_host=listen.host, local_port=listen.port)
    except OSError as exc:
        raise WatcherdError(f"metrics_listen {listen}: cannot listen: {exc.strerror}") from None


async def serve(listener: anyio.abc.Listener[anyio.abc.SocketStream], collect: Collect) -> None:
    """Answer scrapes on `listener` until cancelled; `collect()` gives the body."""
    slots = _Slots(MAX_CONNECTIONS)

    async def handle(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            with anyio.CancelScope() as scope:
                if slots.enter(scope):
                    try:
                        await _answer(stream, collect, slots, scope)
                    finally:
                        slots.leave(scope)

    async with listener:
        await listener.serve(handle)


@dataclass(slots=True)
class _Slots:
    """Open connections: those still waiting for their head (oldest first), and the rest."""

    limit: int
    waiting: dict[anyio.CancelScope, None] = field(default_factory=dict)
    answering: set[anyio.CancelScope] = field(default_factory=set)

    def enter(self, scope: anyio.CancelScope) -> bool:
        """Take a slot, dropping the oldest waiting connection if need be; False if none."""
        if len(self.waiting) + len(self.answering) >= self.limit:
            if not self.waiting:
                return False
            oldest = next(iter(self.waiting))
            del self.waiting[oldest]
            oldest.cancel()
            log.debug("metrics.idle_dropped", open=self.limit)
        self.waiting[scope] = None
        return True

    def answer(self, scope: anyio.CancelScope) -> None:
        """The head arrived: this connection can no longer be dropped."""
        if scope in self.waiting:
            del self.waiting[scope]
            self.answering.add(scope)

    def leave(self, scope: anyio.CancelScope) -> None:
        """The connection is done."""
        self.waiting.pop(scope, None)
        self.answering.discard(scope)


async def _answer(
    stream: anyio.abc.SocketStream, collect: Collect, slots: _Slots, scope: anyio.CancelScope
) -> None:
    """One request, one response, then close; a client that stalls or drops is ignored."""
    try:
        with anyio.move_on_after(REQUEST_DEADLINE):
            with anyio.move_on_after(HEAD_DEADLINE) as head_scope:
                head = await _read_head(stream)
            if head_scope.cancelled_caught:
                return
            slots.answer(scope)
            status, body = await _route(head, collect)
            await stream.send(_response(status, body, head.startswith(b"HEAD ")))
    except (OSError, anyio.BrokenResourceError, anyio.EndOfStream, anyio.ClosedResourceError):
        return


async def _read_head(stream: anyio.abc.SocketStream) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data and b"\n\n" not in data and len(data) <= MAX_REQUEST_HEAD:
        data += await stream.receive()
    return data


async def _route(head: bytes, collect: Collect) -> tuple[str, str]:
    """(status line text, body) for the request head."""
    parts = head.split(b"\r\n", 1)[0].split(b"\n", 1)[0].split()
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
        return "400 Bad Request", "bad request\n"
    method, target = parts[0], parts[1].split(b"?", 1)[0]
    if method not in (b"GET", b"HEAD"):
        return "405 Method Not Allowed", "only GET\n"
    if target != b"/metrics":
        return "404 Not Found", "not found; try /metrics\n"
    try:
        return "200 OK", await collect()
    except WatcherdError as exc:
        log.warning("metrics.collect_failed", error=str(exc))
        return "500 Internal Server Error", "cannot collect metrics\n"


def _response(status: str, body: str, head_only: bool) -> bytes:
    data = body.encode()
    lines = [
        f"HTTP/1.0 {status}",
        f"Content-Type: {CONTENT_TYPE if status.startswith('200') else 'text/plain'}",
        f"Content-Length: {len(data)}",
        "Connection: close",
    ]
    if status.startswith("405"):
        lines.append("Allow: GET, HEAD")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (b"" if head_only else data)
