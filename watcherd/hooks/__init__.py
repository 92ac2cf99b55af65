"""Hook executors: one attempt of a command, webhook or notification hook.

The store owns the outbox and the dispatcher decides when to call `run_hook`;
this package only runs an attempt and says what came of it (`Outcome`), plus the
payload and the backoff policy. Every dependency arrives as an argument.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from watcherd.config import CommandHook, HookConfig, NotifyHook, SecretRef, WebhookHook
from watcherd.errors import HookError
from watcherd.hooks.command import run_command
from watcherd.hooks.notify import parse_urls, send_notification
from watcherd.hooks.outcome import Outcome, next_attempt_delay
from watcherd.hooks.payload import build_payload, encode_payload, render, template_fields
from watcherd.hooks.webhook import post_webhook, sign

__all__ = [
    "Outcome",
    "build_payload",
    "encode_payload",
    "next_attempt_delay",
    "post_webhook",
    "render",
    "run_command",
    "run_hook",
    "send_notification",
    "sign",
    "template_fields",
]

SecretReader = Callable[[SecretRef], str]


async def run_hook(
    hook: HookConfig,
    payload: Mapping[str, Any],
    *,
    delivery_id: str,
    attempt: int,
    http: httpx.AsyncClient,
    secrets: SecretReader | None = None,
    environ: Mapping[str, str] | None = None,
    kill_grace: float = 5.0,
) -> Outcome:
    """Run one attempt of `hook`; never raises except on cancellation.

    `secrets` reads a SecretRef (default: `SecretRef.resolve`). A secret that cannot
    be read, or a hook that cannot run (apprise missing), is a failed attempt to retry.
    Cancellation propagates after any command's process group is killed (within
    about 2 x `kill_grace`: SIGTERM, a grace period, SIGKILL); record it as
    `Outcome.interrupted()`.
    """
    read = secrets or _resolve
    try:
        match hook.action:
            case CommandHook() as command:
                env = os.environ if environ is None else environ
                return await run_command(
                    hook,
                    command,
                    payload,
                    delivery_id=delivery_id,
                    attempt=attempt,
                    environ=env,
                    kill_grace=kill_grace,
                )
            case WebhookHook() as webhook:
                secret = None if webhook.secret is None else _read(read, webhook.secret)
                return await post_webhook(
                    hook, webhook, payload, delivery_id=delivery_id, http=http, secret=secret
                )
            case NotifyHook() as notify:
                urls = parse_urls(_read(read, notify.urls))
                return await send_notification(hook, notify, payload, urls=urls)
    except HookError as exc:
        return Outcome.retry(str(exc))


def _resolve(ref: SecretRef) -> str:
    return ref.resolve()


def _read(read: SecretReader, ref: SecretRef) -> str:
    """Read a secret; any failure becomes a HookError that never holds the secret."""
    try:
        return read(ref)
    except Exception as exc:  # a reader may fail in any way; the attempt must not crash
        raise HookError(f"cannot read secret: {type(exc).__name__}: {exc}") from exc
