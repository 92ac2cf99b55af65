"""Webhook hooks against a real loopback receiver: signing, answers, redirects, deadlines."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import anyio
import httpx
import pytest

from tests.webhook_receiver import Answer, reference_signature, webhook_receiver
from watcherd.config import HookConfig, WebhookHook
from watcherd.hooks.outcome import Outcome
from watcherd.hooks.payload import encode_payload
from watcherd.hooks.webhook import MAX_RETRY_AFTER, post_webhook, sign

pytestmark = pytest.mark.anyio

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
DELIVERY = "ft-abc:completed:team"
PAYLOAD: dict[str, Any] = {"type": "job.completed", "job_id": "ft-abc", "metrics": {"x": None}}
NOW = 1_700_000_000.0


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """A client that would follow redirects if asked, to prove we never ask."""
    async with httpx.AsyncClient(follow_redirects=True) as client:
        yield client


def hook(url: str, timeout: float = 2.0) -> HookConfig:
    """A webhook hook posting to `url`."""
    return HookConfig(name="team", timeout=timeout, action=WebhookHook(url=url))


class Clock:
    """A settable wall clock."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def post(
    url: str, http: httpx.AsyncClient, *, secret: str | None = SECRET, **kw: Any
) -> Outcome:
    """One attempt with the shared payload and delivery id."""
    timeout = kw.pop("timeout", 2.0)
    kw.setdefault("clock", Clock())
    config = hook(url, timeout)
    assert isinstance(config.action, WebhookHook)
    return await post_webhook(
        config, config.action, PAYLOAD, delivery_id=DELIVERY, http=http, secret=secret, **kw
    )


def test_sign_matches_the_published_vector() -> None:
    """`sign` reproduces the Standard Webhooks test vector (whsec_ secret decoded)."""
    body = b'{"test": 2432232314}'
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert sign(SECRET.encode(), "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == expected


def test_plain_secret_signs_with_its_raw_bytes() -> None:
    """A secret without the whsec_ prefix is used as its bytes, as written."""
    got = sign(b"plain secret", "id", 12, b"{}")
    assert got == reference_signature("plain secret", "id", "12", b"{}")


async def test_delivered_request_is_signed(http: httpx.AsyncClient) -> None:
    """A 2xx delivers; the request carries the headers, body and a valid signature."""
    async with webhook_receiver(SECRET) as rx:
        outcome = await post(rx.url(), http)
    assert outcome == Outcome.delivered()
    (req,) = rx.requests
    assert (req.method, req.path) == ("POST", "/hook")
    assert req.headers["content-type"] == "application/json"
    assert req.headers["user-agent"] == "watcherd/0.1.0"
    assert req.headers["webhook-id"] == DELIVERY
    assert req.headers["webhook-timestamp"] == str(int(NOW))
    assert req.body == encode_payload(PAYLOAD) and json.loads(req.body) == PAYLOAD
    assert rx.verify(req)


async def test_no_secret_means_no_signature(http: httpx.AsyncClient) -> None:
    """Without a secret the request goes out unsigned."""
    async with webhook_receiver() as rx:
        assert (await post(rx.url(), http, secret=None)).state == "delivered"
    assert "webhook-signature" not in rx.requests[0].headers


async def test_500_retries_with_a_stable_id(http: httpx.AsyncClient) -> None:
    """A 500 is retried; the next attempt keeps the id but gets a fresh timestamp."""
    clock = Clock()
    async with webhook_receiver(SECRET) as rx:
        rx.script(Answer(500, body=b"database down"))
        first = await post(rx.url(), http, clock=clock)
        clock.now += 30
        second = await post(rx.url(), http, clock=clock)
    assert first == Outcome.retry("HTTP 500: database down")
    assert second.state == "delivered"
    ids = [r.headers["webhook-id"] for r in rx.requests]
    stamps = [r.headers["webhook-timestamp"] for r in rx.requests]
    assert ids == [DELIVERY, DELIVERY]
    assert stamps == [str(int(NOW)), str(int(NOW) + 30)]
    assert all(rx.verify(r) for r in rx.requests)


@pytest.mark.parametrize(
    ("name", "value", "seconds"),
    [
        ("retry-after", "7", 7.0),
        ("retry-after", format_datetime(datetime.fromtimestamp(NOW + 90, UTC), usegmt=True), 90.0),
        ("retry-after-ms", "2500", 2.5),
        ("retry-after", "1e300", MAX_RETRY_AFTER),
    ],
)
async def test_429_honours_retry_after(
    http: httpx.AsyncClient, name: str, value: str, seconds: float
) -> None:
    """A 429 is retried no sooner than its Retry-After (any form), an absurd one capped."""
    async with webhook_receiver(SECRET) as rx:
        rx.script(Answer(429, headers=((name, value),), body=b""))
        outcome = await post(rx.url(), http)
    assert (outcome.state, outcome.error, outcome.retry_after) == ("retry", "HTTP 429", seconds)


async def test_410_gives_up(http: httpx.AsyncClient) -> None:
    """A 410 Gone stops the delivery for good."""
    async with webhook_receiver(SECRET) as rx:
        rx.script(Answer(410, body=b"unsubscribed"))
        outcome = await post(rx.url(), http)
    assert outcome == Outcome.give_up("HTTP 410: receiver asked to stop; unsubscribed")


async def test_redirect_is_not_followed(http: httpx.AsyncClient) -> None:
    """A 302 is a failed attempt and its target is never requested."""
    async with webhook_receiver(SECRET) as rx:
        rx.script(Answer(302, headers=(("location", rx.url("/elsewhere")),)))
        outcome = await post(rx.url(), http)
    assert outcome.state == "retry"
    assert outcome.error is not None and "redirect not followed" in outcome.error
    assert [r.path for r in rx.requests] == ["/hook"]


async def test_slow_drip_ends_by_the_deadline(http: httpx.AsyncClient) -> None:
    """A receiver dripping its answer cannot hold the attempt past hook.timeout."""
    async with webhook_receiver(SECRET) as rx:
        rx.script(Answer(200, body=b"x" * 1000, drip=0.05))
        started = time.monotonic()
        outcome = await post(rx.url(), http, timeout=0.5)
        elapsed = time.monotonic() - started
    assert outcome == Outcome.retry("no complete answer within 0.5s")
    assert 0.5 <= elapsed < 1.5


async def test_large_error_body_is_read_only_in_part(http: httpx.AsyncClient) -> None:
    """A huge error page is cut to a short snippet."""
    async with webhook_receiver(SECRET) as rx:
        rx.script(Answer(503, body=b"<html>" + b"z" * 5_000_000))
        outcome = await post(rx.url(), http)
    assert outcome.state == "retry" and outcome.error is not None
    assert outcome.error.startswith("HTTP 503: <html>zzz") and len(outcome.error) < 300


async def test_unreachable_receiver_retries(http: httpx.AsyncClient) -> None:
    """A refused connection is a failed attempt, not a crash."""
    async with webhook_receiver() as rx:
        url = rx.url()
    outcome = await post(url, http)
    assert outcome.state == "retry"
    assert outcome.error is not None and outcome.error.startswith("ConnectError")


async def test_invalid_url_gives_up(http: httpx.AsyncClient) -> None:
    """A URL no attempt can reach gives up at once."""
    outcome = await post("ftp://example.invalid/x", http)
    assert outcome.state == "give_up"


async def test_deadline_is_overall(http: httpx.AsyncClient) -> None:
    """The attempt's deadline covers the whole exchange, not each read."""
    async with webhook_receiver() as rx:
        rx.script(Answer(200, body=b"abc", drip=0.2))
        with anyio.fail_after(2):
            outcome = await post(rx.url(), http, secret=None, timeout=0.3)
    assert outcome.state == "retry"
