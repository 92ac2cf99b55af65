"""The API client over httpx.MockTransport: requests, shapes, errors, retries, secrecy."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from tests.fakeclock import FakeTime
from watcherd.api.client import ApiClient, ApiStats
from watcherd.config import ApiConfig
from watcherd.errors import (
    ApiError,
    AuthError,
    ClientRequestError,
    InvalidJobIdError,
    MalformedResponseError,
    NotFoundError,
    RateLimitedError,
    UnavailableError,
)
from watcherd.model import MetricFilter

pytestmark = pytest.mark.anyio

KEY = "sk-test-SECRET-0123456789"
JOB = {
    "id": "ft-abc",
    "status": "running",
    "updated_at": "2026-05-19T13:09:53.564Z",
    "model": "meta-llama/Llama-3-8b",
    "model_output_name": "me/llama-ft",
    "progress": {"estimate_available": True, "seconds_remaining": 1380},
}
Handler = Callable[[httpx.Request], httpx.Response]


def make(handler: Handler, fake: FakeTime | None = None, **kwargs: Any) -> ApiClient:
    """A client on a MockTransport, with fake time and no rate cap unless given."""
    fake = fake or FakeTime()
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    kwargs.setdefault("max_rate", 0)
    return ApiClient(
        http,
        base_url="https://api.example.test",
        api_key=KEY,
        clock=fake.clock,
        sleep=fake.sleep,
        rng=random.Random(7),
        **kwargs,
    )


def recording(seen: list[httpx.Request], answer: Handler) -> Handler:
    """A handler that records each request, then answers it with `answer`."""

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer(request)

    return handler


def refuse(request: httpx.Request) -> httpx.Response:
    """A handler whose connection is refused."""
    raise httpx.ConnectError("connection refused", request=request)


def reply(body: str | bytes, status: int = 200, **headers: str) -> Handler:
    """A handler answering every request with the same JSON text."""
    headers.setdefault("content-type", "application/json")
    return lambda request: httpx.Response(status, content=body, headers=headers)


async def test_list_jobs_keeps_unknown_status_and_parses_fields() -> None:
    """list_jobs returns Jobs with unknown statuses verbatim and the convenient fields parsed."""
    other = {"id": "ft-x2", "status": "thawing", "progress": {"estimate_available": False}}
    body = httpx.Response(200, json={"data": [JOB, other, {"id": "uuid-like", "status": "queued"}]})
    seen: list[httpx.Request] = []
    client = make(recording(seen, lambda req: body))
    jobs = await client.list_jobs()
    assert [(j.id, j.status) for j in jobs] == [("ft-abc", "running"), ("ft-x2", "thawing")]
    assert jobs[0].seconds_remaining == 1380.0 and jobs[1].seconds_remaining is None
    assert (jobs[0].model, jobs[0].model_output_name) == ("meta-llama/Llama-3-8b", "me/llama-ft")
    assert jobs[0].updated_at == JOB["updated_at"] and jobs[0].raw == JOB
    assert str(seen[0].url) == "https://api.example.test/v1/fine-tunes"
    assert seen[0].headers["authorization"] == f"Bearer {KEY}"


async def test_base_url_ending_in_v1_is_tolerated() -> None:
    """A base URL that already ends in /v1 does not get a second /v1."""
    seen: list[httpx.Request] = []
    client = ApiClient(
        httpx.AsyncClient(transport=httpx.MockTransport(recording(seen, lambda r: _ok(JOB)))),
        base_url="http://127.0.0.1:8765/v1/",
        api_key=KEY,
    )
    await client.retrieve("ft-abc")
    assert str(seen[-1].url) == "http://127.0.0.1:8765/v1/fine-tunes/ft-abc"


def _ok(obj: Any) -> httpx.Response:
    return httpx.Response(200, json=obj)


async def test_invalid_job_id_is_refused_before_any_request() -> None:
    """A job ID that is not `ft-` plus safe characters never reaches the network."""
    seen: list[httpx.Request] = []
    client = make(recording(seen, lambda req: _ok(JOB)))
    for bad in ("../etc", "ft-a/b", "ft-a?x=1", "abc"):
        with pytest.raises(InvalidJobIdError):
            await client.metrics(bad)
    assert seen == []


async def test_retrieve_rejects_a_different_job() -> None:
    """A retrieve answered with another job's object is malformed, not trusted."""
    client = make(reply(b'{"id": "ft-other", "status": "running"}'))
    with pytest.raises(MalformedResponseError):
        await client.retrieve("ft-abc")


async def test_metrics_query_params() -> None:
    """Filters go out as query params, times as ISO-8601 with offset, None ones left out."""
    seen: list[httpx.Request] = []
    client = make(recording(seen, lambda req: _ok({"metrics": []})))
    ns = 1_779_196_193_564_587_123
    flt = MetricFilter(global_step_from=5, logged_at_from=ns, logged_at_to=ns, resolution=10)
    await client.metrics("ft-abc", flt)
    await client.metrics("ft-abc")
    params = dict(seen[0].url.params)
    assert params == {
        "global_step_from": "5",
        "logged_at_from": "2026-05-19T13:09:53.564587+00:00",
        "logged_at_to": "2026-05-19T13:09:53.564588+00:00",
        "resolution": "10",
    }
    assert seen[0].url.path == "/v1/fine-tunes/ft-abc/metrics"
    assert dict(seen[1].url.params) == {}


async def test_metrics_values_are_exact() -> None:
    """Integer nanosecond timestamps stay ints; NaN, ±Infinity and null survive."""
    text = (
        '{"metrics": [{"timestamp": 1779196193564587001, "train/global_step": 3,'
        ' "train/loss": NaN, "train/grad_norm": Infinity, "eval/x": -Infinity,'
        ' "train/epoch": null}]}'
    )
    (row,) = await make(reply(text)).metrics("ft-abc")
    assert row["timestamp"] == 1779196193564587001 and type(row["timestamp"]) is int
    assert math.isnan(row["train/loss"])
    assert row["train/grad_norm"] == math.inf and row["eval/x"] == -math.inf
    assert row["train/epoch"] is None


@pytest.mark.parametrize("text", ['{"metrics": null}', "{}", '{"metrics": []}'])
async def test_metrics_empty_forms(text: str) -> None:
    """`metrics: null`, a missing key and an empty list all mean no rows."""
    assert await make(reply(text)).metrics("ft-abc") == []


@pytest.mark.parametrize(
    "text",
    [
        '{"metrics": {"train/global_step": 1}}',
        '{"metrics": [[1, 2]]}',
        '{"metrics": [{"train/global_step": 1, "train/loss": true}]}',
        '{"metrics": [{"train/global_step": 1, "train/loss": "0.5"}]}',
        '{"metrics": [{"train/global_step": 1, "nested": {"a": 1}}]}',
        '{"metrics": [{"train/loss": 0.5}]}',
        '{"metrics": [{"train/global_step": 1.5}]}',
        '{"metrics": [{"train/global_step": NaN}]}',
        '{"metrics": [{"train/global_step": null}]}',
        "[1, 2, 3]",
    ],
)
async def test_metrics_wrong_shapes_are_malformed(text: str) -> None:
    """Any row that is not a flat str->number object with an integer step rejects the page."""
    with pytest.raises(MalformedResponseError) as info:
        await make(reply(text)).metrics("ft-abc")
    assert info.value.status == 200 and info.value.content_type == "application/json"


async def test_events_and_cancel() -> None:
    """events returns the data list; cancel POSTs to /cancel and returns the job."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/events"):
            return _ok({"data": [{"type": "job_start", "message": "go"}]})
        return _ok({**JOB, "status": "cancel_requested"})

    client = make(handler)
    assert await client.events("ft-abc") == [{"type": "job_start", "message": "go"}]
    job = await client.cancel("ft-abc")
    assert job.status == "cancel_requested"
    assert (seen[1].method, seen[1].url.path) == ("POST", "/v1/fine-tunes/ft-abc/cancel")


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (400, ClientRequestError),
        (401, AuthError),
        (403, AuthError),
        (404, NotFoundError),
        (422, ClientRequestError),
        (402, ClientRequestError),
    ],
)
async def test_client_errors_are_typed_and_not_retried(status: int, error: type[ApiError]) -> None:
    """400/401/403/404/422 raise their error type after exactly one request."""
    seen: list[httpx.Request] = []
    body = {"error": {"message": "Fine-tune job not found", "type": "invalid_request_error"}}
    client = make(recording(seen, lambda req: httpx.Response(status, json=body)))
    with pytest.raises(error) as info:
        await client.retrieve("ft-abc")
    assert type(info.value) is error and info.value.status == status
    assert "Fine-tune job not found" in str(info.value)
    assert len(seen) == 1


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (408, ClientRequestError),
        (409, ClientRequestError),
        (429, RateLimitedError),
        (500, UnavailableError),
        (502, UnavailableError),
        (503, UnavailableError),
        (504, UnavailableError),
    ],
)
async def test_retryable_statuses_retry_up_to_max_attempts(
    status: int, error: type[ApiError]
) -> None:
    """408/409/429/5xx are retried up to max_attempts, then raise their error type."""
    seen: list[httpx.Request] = []
    fake = FakeTime()
    client = make(recording(seen, lambda req: httpx.Response(status)), fake, max_attempts=4)
    with pytest.raises(error):
        await client.retrieve("ft-abc")
    assert len(seen) == 4
    assert len(fake.sleeps) == 3 and client.stats.retries == 3


async def test_retry_succeeds_after_transient_failures() -> None:
    """A 502, a refused connection, then a 200 give the job; delays within jitter bounds."""
    answers: Iterator[httpx.Response | httpx.ConnectError] = iter(
        [httpx.Response(502), httpx.ConnectError("refused"), _ok(JOB)]
    )

    def handler(request: httpx.Request) -> httpx.Response:
        answer = next(answers)
        if isinstance(answer, httpx.ConnectError):
            raise answer
        return answer

    fake = FakeTime()
    client = make(handler, fake, backoff_base=0.5, backoff_cap=30.0)
    assert (await client.retrieve("ft-abc")).status == "running"
    assert 0 <= fake.sleeps[0] <= 0.5 and 0 <= fake.sleeps[1] <= 1.0
    assert client.stats == ApiStats(
        requests=3, retries=2, outcomes={"502": 1, "UnavailableError": 1, "200": 1}
    )


async def test_retry_after_is_honoured_without_a_cap() -> None:
    """A 500 with Retry-After: 120 waits the full 120 s (no 60 s cap) when allowed."""
    answers = iter([httpx.Response(500, headers={"retry-after": "120"}), _ok(JOB)])
    fake = FakeTime()
    client = make(lambda req: next(answers), fake, max_wait=600)
    await client.retrieve("ft-abc")
    assert fake.sleeps == [120.0]


async def test_long_rate_limit_raises_with_resume_at_and_pauses_gate() -> None:
    """A 429 asking for an hour raises RateLimitedError(resume_at) at once and pauses the host."""
    seen: list[httpx.Request] = []
    fake = FakeTime()
    limited = httpx.Response(429, headers={"retry-after": "3600"})
    client = make(recording(seen, lambda req: limited), fake)
    with pytest.raises(RateLimitedError) as info:
        await client.list_jobs()
    assert info.value.resume_at == fake.now + 3600 and info.value.status == 429
    assert client.gate.paused_until == fake.now + 3600
    with pytest.raises(RateLimitedError) as again:
        await client.retrieve("ft-abc")
    assert again.value.resume_at == fake.now + 3600
    assert len(seen) == 1 and fake.sleeps == []


@pytest.mark.parametrize(
    ("name", "value"),
    [("retry-after", "999999999"), ("retry-after", "1e300"), ("retry-after-ms", "1e308")],
)
async def test_an_absurd_retry_after_is_capped_and_logged(name: str, value: str) -> None:
    """An absurd Retry-After pauses the host for max_retry_after only, and says so in the log."""
    fake = FakeTime()
    client = make(reply(b"{}", 429, **{name: value}), fake, max_retry_after=600.0)
    with capture_logs() as logs, pytest.raises(RateLimitedError) as info:
        await client.list_jobs()
    assert info.value.resume_at == fake.now + 600.0 == client.gate.paused_until
    assert [e["event"] for e in logs] == ["api.retry_after_capped"]


async def test_503_with_retry_after_is_rate_limiting() -> None:
    """A 503 with Retry-After past what we wait is RateLimitedError with status 503."""
    client = make(reply(b"busy", 503, **{"retry-after-ms": "900000"}))
    with pytest.raises(RateLimitedError) as info:
        await client.list_jobs()
    assert info.value.status == 503


@pytest.mark.parametrize(
    ("status", "body", "content_type"),
    [
        (200, b"<html><body>Bad gateway</body></html>", "text/html"),
        (200, b'{"data": [{"id": "ft-a", "sta', "application/json"),
        (200, b"", "application/json"),
        (200, b'{"data": []}', "text/plain"),
        (200, b"[" * 100_000 + b"]" * 100_000, "application/json"),
        (200, b'{"data": "nope"}', "application/json"),
        (200, b'{"data": [{"id": "ft-a"}]}', "application/json"),
        (200, b"\xff\xfe\x00garbage", "application/json"),
    ],
)
async def test_untrustworthy_bodies_are_malformed(
    status: int, body: bytes, content_type: str
) -> None:
    """HTML, truncated, empty, wrongly typed, deeply nested or misshapen 200s are malformed."""
    client = make(reply(body, status, **{"content-type": content_type}))
    with pytest.raises(MalformedResponseError) as info:
        await client.list_jobs()
    err = info.value
    assert (err.status, err.content_type) == (status, content_type)
    assert err.snippet == body[:200].decode("utf-8", "replace").replace("\x00", " ")[:200]
    assert len(err.snippet) <= 200 and err.snippet.isprintable()


async def test_api_key_never_appears_in_errors_or_reprs() -> None:
    """Even a server echoing the key back does not get it into messages, snippets or reprs."""
    echo = f"<html>Authorization: Bearer {KEY}</html>"
    errors: list[Exception] = []
    for status, ctype in [(200, "text/html"), (400, "text/html"), (401, "application/json")]:
        client = make(reply(echo, status, **{"content-type": ctype}), max_attempts=1)
        with pytest.raises(ApiError) as info:
            await client.list_jobs()
        errors.append(info.value)
    client = make(refuse, max_attempts=1)
    with pytest.raises(UnavailableError) as unavailable:
        await client.list_jobs()
    errors.append(unavailable.value)
    texts = [repr(client), repr(client.stats), repr(client.gate)]
    texts += [str(e) for e in errors] + [repr(e) for e in errors]
    assert all(KEY not in text for text in texts)
    assert "[REDACTED]" in str(errors[0])


async def test_from_config_applies_settings() -> None:
    """from_config builds a client from ApiConfig plus the resolved key."""
    seen: list[httpx.Request] = []
    http = httpx.AsyncClient(transport=httpx.MockTransport(recording(seen, lambda r: _ok(JOB))))
    config = ApiConfig(base_url="http://127.0.0.1:9/", timeout=5.0, max_rate=100.0)
    client = ApiClient.from_config(http, config, KEY)
    await client.retrieve("ft-abc")
    assert str(seen[0].url) == "http://127.0.0.1:9/v1/fine-tunes/ft-abc"
