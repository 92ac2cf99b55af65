"""Notify hooks through apprise's json:// scheme against a loopback receiver."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.webhook_receiver import Answer, webhook_receiver
from watcherd.config import HookConfig, NotifyHook, SecretRef
from watcherd.errors import HookError
from watcherd.hooks.notify import INSTALL_HINT, parse_urls, send_notification
from watcherd.hooks.outcome import Outcome

pytestmark = [
    pytest.mark.anyio,
    # apprise's email plugin imports the stdlib's deprecated imghdr on Python < 3.13.
    pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning"),
]

PAYLOAD: dict[str, Any] = {
    "type": "job.completed",
    "delivery_id": "ft-abc:completed:team",
    "job_id": "ft-abc",
    "status": "completed",
    "previous_status": "running",
    "job": {"model": "meta/llama", "model_output_name": "me/llama-ft"},
    "metrics": {"last_step": 120, "last_train_loss": 0.123456, "last_eval_loss": None},
}


def notify_hook(timeout: float = 5.0, **kw: Any) -> HookConfig:
    """A notify hook; its URLs are passed to send_notification directly."""
    urls = SecretRef(file=Path("/unused"))
    return HookConfig(name="team", timeout=timeout, action=NotifyHook(urls=urls, **kw))


def as_notify(hook: HookConfig) -> NotifyHook:
    """The notify action of a hook built by `notify_hook`."""
    assert isinstance(hook.action, NotifyHook)
    return hook.action


async def send(hook: HookConfig, payload: dict[str, Any], *, urls: list[str]) -> Outcome:
    """One attempt of `hook`'s notification."""
    return await send_notification(hook, as_notify(hook), payload, urls=urls)


def json_url(http_url: str) -> str:
    """apprise's JSON-over-HTTP URL for a plain http:// URL, with short socket timeouts."""
    return "json://" + http_url.removeprefix("http://") + "?cto=1&rto=1"


async def test_message_reaches_every_url() -> None:
    """Title and body come from the templates and reach every configured URL."""
    hook = notify_hook(template="{job_id} {status}: loss {train_loss}, eval {eval_loss} {oops}")
    async with webhook_receiver() as rx:
        urls = [json_url(rx.url("/a")), json_url(rx.url("/b"))]
        outcome = await send_notification(hook, as_notify(hook), PAYLOAD, urls=urls)
    assert outcome.state == "delivered", outcome
    assert sorted(r.path for r in rx.requests) == ["/a", "/b"]
    message = json.loads(rx.requests[0].body)
    assert message["title"] == "watcherd: ft-abc completed"
    assert message["message"] == "ft-abc completed: loss 0.1235, eval - {oops}"


async def test_service_failure_retries() -> None:
    """A service answering 500 makes the attempt a retry."""
    async with webhook_receiver() as rx:
        rx.script(Answer(500))
        outcome = await send(notify_hook(), PAYLOAD, urls=[json_url(rx.url())])
    assert outcome.state == "retry"
    assert outcome.error == "apprise reported a failure for at least one of 1 URLs"


async def test_invalid_url_gives_up_without_showing_it() -> None:
    """An unparseable URL gives up, and the error never repeats the URL (it holds tokens)."""
    url = "nosuchscheme://secret-token@host"
    outcome = await send(notify_hook(), PAYLOAD, urls=[url])
    assert outcome.state == "give_up"
    assert outcome.error == "notify URL #1 (nosuchscheme://) is not valid"


async def test_no_urls_gives_up() -> None:
    """A secret holding no URL at all gives up."""
    outcome = await send(notify_hook(), PAYLOAD, urls=[])
    assert outcome.state == "give_up"


async def test_slow_service_hits_the_deadline() -> None:
    """A service that drips its answer cannot hold the attempt past hook.timeout."""
    async with webhook_receiver() as rx:
        rx.script(Answer(200, body=b"x" * 100, drip=0.05))
        started = time.monotonic()
        outcome = await send(notify_hook(0.5), PAYLOAD, urls=[json_url(rx.url())])
        elapsed = time.monotonic() - started
    assert outcome.state == "retry"
    assert outcome.error == "notification not sent within 0.5s"
    assert elapsed < 1.5


async def test_missing_apprise_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without apprise installed, the error names the extra to install."""
    monkeypatch.setitem(sys.modules, "apprise", None)
    with pytest.raises(HookError, match=r"pip install 'watcherd\[notify\]'"):
        await send(notify_hook(), PAYLOAD, urls=["json://localhost"])
    assert "watcherd[notify]" in INSTALL_HINT


def test_parse_urls_skips_blanks_and_comments() -> None:
    """The URL secret holds one URL a line; blank lines and # comments are skipped."""
    text = "# team chat\njson://a/x\n\n  ntfy://topic  \n"
    assert parse_urls(text) == ["json://a/x", "ntfy://topic"]
