"""run_hook: dispatch on the hook kind, secrets read per attempt, failures as Outcomes."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.webhook_receiver import webhook_receiver
from watcherd.config import CommandHook, HookConfig, NotifyHook, SecretRef, WebhookHook
from watcherd.hooks import Outcome, run_hook

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning"),
]

PAYLOAD: dict[str, Any] = {"type": "job.error", "job_id": "ft-abc", "status": "error"}
DELIVERY = "ft-abc:error:h"


def secret_file(tmp_path: Path, text: str, mode: int = 0o600) -> SecretRef:
    """A secret written to a file with `mode`."""
    path = tmp_path / "secret"
    path.write_text(text + "\n")
    path.chmod(mode)
    return SecretRef(file=path)


async def run(hook: HookConfig, http: httpx.AsyncClient, **kw: Any) -> Outcome:
    """One attempt through run_hook."""
    return await run_hook(hook, PAYLOAD, delivery_id=DELIVERY, attempt=2, http=http, **kw)


async def test_command_hook(http: httpx.AsyncClient) -> None:
    """A command hook runs with the attempt number and the given environment."""
    script = "import os; print(os.environ['WATCHERD_ATTEMPT'], 'HOME' in os.environ)"
    hook = HookConfig(name="h", timeout=5, action=CommandHook((sys.executable, "-c", script)))
    outcome = await run(hook, http, environ={"PATH": os.environ["PATH"]})
    assert outcome == Outcome.delivered("2 False\n")


async def test_webhook_secret_from_file(http: httpx.AsyncClient, tmp_path: Path) -> None:
    """A webhook secret is read through SecretRef.resolve and signs the request."""
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    async with webhook_receiver(secret) as rx:
        web = WebhookHook(url=rx.url(), secret=secret_file(tmp_path, secret))
        outcome = await run(HookConfig(name="h", timeout=5, action=web), http)
    assert outcome.state == "delivered"
    assert rx.verify(rx.requests[0])


async def test_loose_secret_file_is_a_retry(http: httpx.AsyncClient, tmp_path: Path) -> None:
    """A world-readable secret is refused (with the chmod hint) and nothing is sent."""
    async with webhook_receiver() as rx:
        web = WebhookHook(url=rx.url(), secret=secret_file(tmp_path, "s3cret", 0o644))
        outcome = await run(HookConfig(name="h", action=web), http)
    assert outcome.state == "retry" and outcome.error is not None
    assert "chmod 600" in outcome.error and "s3cret" not in outcome.error
    assert rx.requests == []


async def test_failing_secret_reader_is_a_retry(http: httpx.AsyncClient) -> None:
    """Whatever a custom secret reader raises becomes a failed attempt."""

    def broken(ref: SecretRef) -> str:
        raise RuntimeError("vault sealed")

    web = WebhookHook(url="http://127.0.0.1:9/", secret=SecretRef(env="NOPE"))
    outcome = await run(HookConfig(name="h", action=web), http, secrets=broken)
    assert outcome == Outcome.retry("cannot read secret: RuntimeError: vault sealed")


async def test_notify_urls_from_secret(http: httpx.AsyncClient, tmp_path: Path) -> None:
    """Notify URLs come one a line from a secret file."""
    async with webhook_receiver() as rx:
        urls = "\n".join(["# ops", "json://" + rx.url("/n").removeprefix("http://")])
        notify = NotifyHook(urls=secret_file(tmp_path, urls), template="{job_id} {status}")
        outcome = await run(HookConfig(name="h", timeout=5, action=notify), http)
    assert outcome.state == "delivered"
    assert [r.path for r in rx.requests] == ["/n"]


async def test_missing_apprise_is_a_retry(
    http: httpx.AsyncClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without apprise, a notify attempt fails with the install hint instead of crashing."""
    monkeypatch.setitem(sys.modules, "apprise", None)
    notify = NotifyHook(urls=secret_file(tmp_path, "json://127.0.0.1:9/"))
    outcome = await run(HookConfig(name="h", action=notify), http)
    assert outcome.state == "retry" and outcome.error is not None
    assert "pip install 'watcherd[notify]'" in outcome.error
