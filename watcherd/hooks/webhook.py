"""Webhook hooks: a signed JSON POST per Standard Webhooks (standardwebhooks.com).

Headers: `webhook-id` (the delivery id, the same on every attempt, so a receiver
can de-duplicate), `webhook-timestamp` (epoch seconds of this attempt) and
`webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.

Secret format: a secret written `whsec_<base64>` (as Standard Webhooks libraries
generate them) signs with the base64-decoded bytes; any other secret signs with its
UTF-8 bytes as written. Without a secret the request goes out unsigned.

Rules: redirects are never followed (a 3xx is a failed attempt, retried); the whole
exchange, response included, must end within `hook.timeout` (httpx's own read
timeout restarts on every chunk, so a slow-drip receiver could otherwise hold us);
at most `RESPONSE_CAP` bytes of the response are read, undecoded, for the error
message. 2xx is delivered, 410 gives up, anything else is retried no sooner than
its `Retry-After` (read by `watcherd.retry`: seconds, an HTTP date or
`retry-after-ms`; at most `MAX_RETRY_AFTER`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

import anyio
import httpx

from watcherd import __version__
from watcherd.config import HookConfig, WebhookHook
from watcherd.errors import HookError
from watcherd.hooks.outcome import Outcome
from watcherd.hooks.payload import encode_payload
from watcherd.retry import parse_retry_after

SECRET_PREFIX: Final = "whsec_"
USER_AGENT: Final = f"watcherd/{__version__}"
RESPONSE_CAP: Final = 4096
#: The longest Retry-After a receiver gets honoured (a day: deliveries are not urgent).
MAX_RETRY_AFTER: Final = 86400.0
_SNIPPET: Final = 200


def secret_key(secret: bytes) -> bytes:
    """The HMAC key for a configured secret: `whsec_<base64>` decoded, else as is."""
    if not secret.startswith(SECRET_PREFIX.encode()):
        return secret
    try:
        return base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except binascii.Error as exc:
        raise HookError("webhook secret starts with 'whsec_' but is not valid base64") from exc


def sign(secret: bytes, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` value: `v1,` and the base64 HMAC-SHA256 of id.timestamp.body."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


async def post_webhook(
    hook: HookConfig,
    webhook: WebhookHook,
    payload: Mapping[str, Any],
    *,
    delivery_id: str,
    http: httpx.AsyncClient,
    secret: str | None,
    clock: Callable[[], float] = time.time,
) -> Outcome:
    """Deliver one attempt of a webhook hook; see the module docstring for the rules."""
    body = encode_payload(payload)
    headers = _headers(delivery_id, int(clock()), body, secret)
    try:
        request = http.build_request("POST", webhook.url, content=body, headers=headers)
        with anyio.fail_after(hook.timeout):
            response, snippet = await _exchange(http, request)
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
        return Outcome.give_up(f"invalid webhook URL: {exc}")
    except TimeoutError:
        return Outcome.retry(f"no complete answer within {hook.timeout:g}s")
    except httpx.HTTPError as exc:
        return Outcome.retry(f"{type(exc).__name__}: {exc}".rstrip(": "))
    return _classify(response, snippet, clock)


def _headers(delivery_id: str, timestamp: int, body: bytes, secret: str | None) -> dict[str, str]:
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": delivery_id,
        "webhook-timestamp": str(timestamp),
    }
    if secret is not None:
        headers["webhook-signature"] = sign(secret.encode(), delivery_id, timestamp, body)
    return headers


async def _exchange(http: httpx.AsyncClient, request: httpx.Request) -> tuple[httpx.Response, str]:
    """Send without following redirects; read at most RESPONSE_CAP raw bytes of the answer."""
    response = await http.send(request, stream=True, follow_redirects=False)
    try:
        kept = bytearray()
        async for chunk in response.aiter_raw():
            kept += chunk
            if len(kept) >= RESPONSE_CAP:
                break
    finally:
        await response.aclose()
    return response, bytes(kept[:_SNIPPET]).decode(errors="replace")


def _classify(response: httpx.Response, snippet: str, clock: Callable[[], float]) -> Outcome:
    status = response.status_code
    if 200 <= status < 300:
        return Outcome.delivered()
    if status == 410:
        return Outcome.give_up(f"HTTP 410: receiver asked to stop; {snippet}".rstrip("; "))
    if 300 <= status < 400:
        location = response.headers.get("location", "")[:_SNIPPET]
        return Outcome.retry(f"HTTP {status}: redirect not followed (to {location!r})")
    asked = parse_retry_after(response.headers, now=clock(), cap=MAX_RETRY_AFTER)
    wait = None if asked is None else asked.delay
    return Outcome.retry(f"HTTP {status}: {snippet}".rstrip(": "), retry_after=wait)
