"""The resilient async client for Together's fine-tuning API.

The caller creates the `httpx.AsyncClient` and passes it in; the clock, sleep and random
source are injectable. Every request goes through, in order: the host gate (a
Retry-After pause holds back every caller), the in-flight cap, the rate cap, the pause
other daemons stored (on a shared database), then one bounded exchange
(`api_transport.fetch`). Failures become the typed errors of
`watcherd.errors`; 408, 409, 429, 5xx, timeouts and transport errors are retried with
full-jitter exponential backoff (or the service's Retry-After, cut to
`max_retry_after`) up to `max_attempts`; a wait longer than `max_wait` is not made
and the error is raised instead (for a pause, RateLimitedError carrying `resume_at`).
A 429 or 503 with Retry-After pauses the host gate, and the pause is saved before
the request that met it returns or retries.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar

import anyio
import httpx
import structlog

from watcherd import __version__
from watcherd.api.direct import Route
from watcherd.api.latency import Histogram, LatencySnapshot
from watcherd.api.limits import Clock, HostGate, RateLimiter, Sleep, Slots
from watcherd.api.metricrows import MetricsFramer
from watcherd.api.netstream import use_lean_backend
from watcherd.api.shapes import (
    Job,
    ShapeError,
    error_message,
    job_from_body,
    jobs_from_body,
    metric_params,
    parse_events,
    snippet,
)
from watcherd.api.transport import Exchange, RawResponse, fetch, is_json, request_headers
from watcherd.backoff import full_jitter
from watcherd.config import ApiConfig
from watcherd.errors import (
    ApiError,
    AuthError,
    ClientRequestError,
    MalformedResponseError,
    NotFoundError,
    RateLimitedError,
    UnavailableError,
)
from watcherd.model import MetricFilter, MetricRecord, MetricRow, loads_exact, validate_job_id
from watcherd.retry import DEFAULT_MAX_RETRY_AFTER, RetryAfter, parse_retry_after

__all__ = ["ApiClient", "ApiStats", "Job", "OnBatch"]

T = TypeVar("T")
#: Where `metric_records` hands each batch of rows cut from a big body, as it arrives.
OnBatch = Callable[[list[MetricRecord]], Awaitable[None]]
MiB = 1024 * 1024
USER_AGENT: Final = f"watcherd/{__version__}"

log = structlog.get_logger("watcherd.api")


@dataclass(frozen=True, slots=True)
class ApiStats:
    """Counters since the client was made: attempts sent, retries, outcomes by kind.

    `outcomes` keys are HTTP statuses as text (`"200"`, `"429"`) or the error class
    for attempts that got no usable response (`"UnavailableError"`, ...).
    `latency` holds the seconds each attempt took (not compared: timing varies).
    """

    requests: int
    retries: int
    outcomes: Mapping[str, int]
    latency: LatencySnapshot = field(default_factory=LatencySnapshot, compare=False)


class ApiClient:
    """Talks to `/v1/fine-tunes` on one host, politely and defensively."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        base_url: str,
        api_key: str,
        timeout: float = 30.0,
        max_concurrency: int = 8,
        max_rate: float = 5.0,
        max_body_bytes: int = 64 * MiB,
        max_attempts: int = 4,
        max_wait: float | None = None,
        max_retry_after: float = DEFAULT_MAX_RETRY_AFTER,
        gate: HostGate | None = None,
        clock: Clock = time.time,
        sleep: Sleep = anyio.sleep,
        rng: random.Random | None = None,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
    ) -> None:
        self._http = http
        self._base = _api_root(base_url)
        self._key = api_key
        self._headers = request_headers(  # built once, with the client's own (see transport)
            http,
            {"authorization": f"Bearer {api_key}", "accept": "application/json",
             "user-agent": USER_AGENT},
        )  # fmt: skip
        self._route = Route.of(http, self._base, self._headers)
        self._timeout = timeout
        self._max_body = max_body_bytes
        self._max_attempts = max(1, max_attempts)
        self._max_wait = timeout if max_wait is None else max_wait
        self._max_retry_after = max_retry_after
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._backoff = (backoff_base, backoff_cap)
        self.gate = gate or HostGate(clock=clock, sleep=sleep)
        self._slots = Slots(max(1, max_concurrency))
        self._limiter = RateLimiter(max_rate, sleep=sleep)
        self._budget = (max_rate, max(1, max_concurrency))
        self._outcomes: Counter[str] = Counter()
        self._retries = 0
        self._latency = Histogram()

    def share(self, daemons: int) -> None:
        """Keep to 1/`daemons` of `max_rate` and `max_concurrency` (at least one slot),
        so that daemons sharing a database together stay within the configured budget."""
        rate, slots = self._budget
        n = max(1, daemons)
        self._limiter.set_rate(rate / n)
        self._slots.total_tokens = max(1, slots // n)

    @staticmethod
    def http_client(config: ApiConfig) -> httpx.AsyncClient:
        """The httpx client for the API: a connection pool as large as the request cap.

        A bigger pool only costs CPU (httpx scans every pooled connection per request);
        waiting for a connection is bounded by each request's own overall deadline.
        """
        slots = config.max_concurrency
        http = httpx.AsyncClient(
            follow_redirects=False,
            limits=httpx.Limits(max_connections=slots, max_keepalive_connections=slots),
            timeout=httpx.Timeout(config.timeout, pool=None),
        )
        use_lean_backend(http)  # the pool's per-request socket checks made cheap
        return http

    @classmethod
    def from_config(
        cls, http: httpx.AsyncClient, config: ApiConfig, api_key: str, **kwargs: Any
    ) -> ApiClient:
        """A client with the settings of `config` and the resolved key."""
        return cls(
            http,
            base_url=config.base_url,
            api_key=api_key,
            timeout=config.timeout,
            max_concurrency=config.max_concurrency,
            max_rate=config.max_rate,
            max_body_bytes=config.max_body_bytes,
            max_retry_after=config.max_retry_after,
            **kwargs,
        )

    def __repr__(self) -> str:
        return f"ApiClient(base_url={self._base!r})"

    @property
    def stats(self) -> ApiStats:
        """A snapshot of the counters."""
        outcomes = dict(self._outcomes)
        return ApiStats(sum(outcomes.values()), self._retries, outcomes, self._latency.snapshot())

    async def list_jobs(self) -> list[Job]:
        """Every job of the account (`GET /v1/fine-tunes`, unpaginated).

        A job listed more than once is left out (logged `api.list_repeated_id`): which
        of its entries is current cannot be told, so the poller retrieves it alone.
        """
        jobs = await self._call("GET", "", None, jobs_from_body)
        counts = Counter(job.id for job in jobs)
        if len(counts) == len(jobs):
            return jobs
        repeated = sorted(job_id for job_id, n in counts.items() if n > 1)
        log.warning("api.list_repeated_id", job_ids=repeated)
        return [job for job in jobs if counts[job.id] == 1]

    async def retrieve(self, job_id: str) -> Job:
        """One job (`GET /v1/fine-tunes/{id}`)."""
        validate_job_id(job_id)
        return await self._call("GET", f"/{job_id}", None, _job_parser(job_id))

    async def metrics(self, job_id: str, flt: MetricFilter | None = None) -> list[MetricRow]:
        """Metric rows in API order (`GET /v1/fine-tunes/{id}/metrics`), values exact."""
        return [loads_exact(r[4]) for r in await self.metric_records(job_id, flt)]

    async def metric_records(
        self, job_id: str, flt: MetricFilter | None = None, on_batch: OnBatch | None = None
    ) -> list[MetricRecord]:
        """Metric rows in API order as records, streamed: never a dict per row.

        A big body is cut into batches of rows as it arrives; with `on_batch` each
        batch but the last goes there at once (and the body is never held whole), the
        last is returned. A request that fails after a batch was handed over is not
        retried: those rows are the caller's, and its next fetch goes on from them.
        """
        validate_job_id(job_id)
        sink = _MetricsSink(on_batch)
        return await self._call("GET", f"/{job_id}/metrics", metric_params(flt), sink.rest, sink)

    async def events(self, job_id: str) -> list[dict[str, Any]]:
        """The job's events (`GET /v1/fine-tunes/{id}/events`)."""
        validate_job_id(job_id)
        return await self._call("GET", f"/{job_id}/events", None, _decoded(parse_events))

    async def cancel(self, job_id: str) -> Job:
        """Ask the service to cancel a job (`POST /v1/fine-tunes/{id}/cancel`)."""
        validate_job_id(job_id)
        return await self._call("POST", f"/{job_id}/cancel", None, _job_parser(job_id))

    async def _call(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        parse: Callable[[bytes], T],
        sink: _MetricsSink | None = None,
    ) -> T:
        """One request; `parse` reads the body bytes (ShapeError, or ValueError for bad JSON).

        With `sink`, a 2xx JSON body streams into it and `parse` gets only its head.
        """
        raw = await self._request(method, f"{self._base}/fine-tunes{path}", params or {}, sink)
        self._check_json(raw)
        try:
            return parse(raw.body)
        except ShapeError as exc:
            raise self._malformed(raw, f"unexpected shape: {exc}") from None
        except ValueError as exc:  # loads_exact's: not JSON (UnicodeDecodeError included)
            raise self._malformed(raw, f"invalid JSON: {str(exc)[:80]}") from None
        except (ArithmeticError, RecursionError) as exc:
            # A shape no parser rule foresaw must still be a refused body, not a crash.
            why = f"{type(exc).__name__}: {str(exc)[:80]}"
            raise self._malformed(raw, f"unexpected shape: {why}") from None

    async def _request(
        self, method: str, url: str, params: Mapping[str, str], sink: _MetricsSink | None = None
    ) -> RawResponse:
        attempt = 0
        while True:
            attempt += 1
            hint: float | None = None
            try:
                raw, hint = await self._attempt(method, url, params, sink)
            except UnavailableError as exc:
                error: ApiError = exc
            else:
                if 200 <= raw.status < 300:
                    return raw
                error = self._classify(raw, hint)
            delay = self._retry_delay(error, attempt, hint)
            if delay is None or (sink is not None and sink.handed_over):
                raise error
            if sink is not None:
                sink.restart()
            self._retries += 1
            await self._sleep(delay)

    def _retry_delay(self, error: ApiError, attempt: int, hint: float | None) -> float | None:
        """Seconds to wait before the next attempt, or None to give up now."""
        if attempt >= self._max_attempts or not _retryable(error):
            return None
        base, cap = self._backoff
        delay = full_jitter(attempt, base=base, cap=cap, rng=self._rng)
        if hint is not None:  # honoured, but never sooner than the backoff (Retry-After: 0)
            delay = max(delay, hint - self._clock())
        return delay if delay <= self._max_wait else None

    async def _attempt(
        self, method: str, url: str, params: Mapping[str, str], sink: _MetricsSink | None
    ) -> tuple[RawResponse, float | None]:
        """One request once the gate, the in-flight cap and the rate cap allow it."""
        exchange = Exchange(
            method=method,
            url=url,
            params=params,
            headers=self._headers,
            timeout=self._timeout,
            max_body=self._max_body,
            secret=self._key,
            route=self._route,
        )
        gate = self.gate
        if not gate.clear():
            await gate.wait(self._clock() + self._max_wait)
        async with self._slots:
            await self._limiter.acquire()
            if not gate.clear():
                deadline = self._clock() + self._max_wait
                read_at = await gate.open_for(deadline, self._max_retry_after)
                if read_at is not None:  # when it last read the pause other daemons stored
                    log.debug("api.request_sent", url=url, read_at=read_at)
            with gate.exchange():
                return await self._exchange(exchange, sink)

    async def _exchange(
        self, exchange: Exchange, sink: _MetricsSink | None
    ) -> tuple[RawResponse, float | None]:
        """Send and read (a metrics body into `sink`); a pause the answer asks for is
        saved before this returns."""
        started = time.monotonic()
        try:
            raw = await fetch(self._http, exchange, None if sink is None else sink.consume)
        except ApiError as exc:
            self._outcomes[type(exc).__name__] += 1
            raise
        finally:
            self._latency.observe(time.monotonic() - started)
        self._outcomes[str(raw.status)] += 1
        if 200 <= raw.status < 300:
            return raw, None
        hint = self._retry_after(raw)
        if raw.status in (429, 503) and hint is not None:
            await self.gate.extend(hint)
        return raw, hint

    def _classify(self, raw: RawResponse, hint: float | None) -> ApiError:
        """The error for a non-2xx response (`hint`: the Retry-After time it gave, if any)."""
        status, url = raw.status, raw.url
        detail = self._detail(raw)
        if status in (429, 503) and (hint is not None or status == 429):
            resume_at = hint if hint is not None else self._clock()
            message = f"rate limited ({status}): {detail}"
            return RateLimitedError(message, resume_at=resume_at, status=status, url=url)
        if status in (401, 403):
            return AuthError(f"API key refused ({status}): {detail}", status=status, url=url)
        if status == 404:
            return NotFoundError(f"not found: {detail}", status=status, url=url)
        if 300 <= status < 400:
            location = snippet(raw.headers.get("location", "").encode(), self._key) or "nowhere"
            return ClientRequestError(
                f"redirect refused ({status} to {location}): {detail}", status=status, url=url
            )
        if 300 <= status < 500:
            return ClientRequestError(
                f"request refused ({status}): {detail}", status=status, url=url
            )
        return UnavailableError(f"service failed ({status}): {detail}", status=status, url=url)

    def _retry_after(self, raw: RawResponse) -> float | None:
        """The epoch time the response asks us to wait until (capped), or None."""
        now = self._clock()
        asked = parse_retry_after(raw.headers, now=now, cap=self._max_retry_after)
        if asked is None:
            return None
        if asked.capped:
            _log_capped(asked, raw)
        return now + asked.delay

    def _detail(self, raw: RawResponse) -> str:
        try:
            message = error_message(loads_exact(raw.body))
        except (ValueError, UnicodeDecodeError):
            message = None
        text = message if message is not None else snippet(raw.body, self._key)
        return snippet(text.encode(), self._key) or "(empty body)"

    def _check_json(self, raw: RawResponse) -> None:
        """MalformedResponseError unless the response is labelled JSON and has a body."""
        if not is_json(raw.content_type):
            raise self._malformed(raw, "the response is not JSON")
        if not raw.streamed and not raw.body.strip():
            raise self._malformed(raw, "the response body is empty")

    def _malformed(self, raw: RawResponse, message: str) -> MalformedResponseError:
        return MalformedResponseError(
            message,
            status=raw.status,
            content_type=raw.content_type,
            snippet=snippet(raw.body, self._key),
            url=raw.url,
        )


def _log_capped(asked: RetryAfter, raw: RawResponse) -> None:
    log.warning(
        "api.retry_after_capped",
        asked_s=f"{asked.asked:.6g}",  # text: it may be inf
        capped_to_s=asked.delay,
        status=raw.status,
        url=raw.url,
        hint="raise api.max_retry_after to honour longer pauses",
    )


def _retryable(error: ApiError) -> bool:
    if isinstance(error, RateLimitedError | UnavailableError):
        return True
    return isinstance(error, ClientRequestError) and error.status in (408, 409)


def _job_parser(job_id: str) -> Callable[[bytes], Job]:
    return lambda body: job_from_body(body, expect_id=job_id)


def _decoded(parse: Callable[[Any], T]) -> Callable[[bytes], T]:
    """A body parser from a parser of the decoded JSON."""
    return lambda body: parse(loads_exact(body))


class _MetricsSink:
    """A metrics body as it streams in: framed into batches, each handed on or kept."""

    def __init__(self, on_batch: OnBatch | None) -> None:
        self._on_batch = on_batch
        self.handed_over = False
        self.restart()

    def restart(self) -> None:
        """Forget a failed attempt's partial body (nothing of it was handed over)."""
        self.framer = MetricsFramer()
        self.kept: list[MetricRecord] = []

    def rest(self, head: bytes) -> list[MetricRecord]:
        """The rows not handed over: those kept, and the body's last ones (`head`, the
        body's first bytes, is not read: every byte came through `consume`)."""
        return self.kept + self.framer.finish()

    async def consume(self, chunk: bytes) -> None:
        """One chunk of the body."""
        for batch in self.framer.feed(chunk):
            if self._on_batch is None:
                self.kept.extend(batch)
            else:
                self.handed_over = True
                await self._on_batch(batch)


def _api_root(base_url: str) -> str:
    """`https://host[/prefix]/v1` from a base with or without a trailing `/v1`."""
    base = base_url.strip().rstrip("/")
    if base.endswith("/v1"):
        base = base[: -len("/v1")]
    return f"{base}/v1"
