"""Notification hooks: chat, phone and mail services through apprise.

apprise is an optional extra (`pip install 'watcherd[notify]'`). It is synchronous,
so it runs in a worker thread under a deadline of `hook.timeout`. A thread cannot
be killed: on timeout the attempt is recorded as failed at once and the thread is
abandoned to finish on its own (apprise's own socket timeouts bound it; append
`?cto=5&rto=10` to a URL to tighten them).

The URLs embed tokens, so they are secrets: no error message names one, only its
position and scheme. apprise reports success as one boolean, so a failure says
that at least one service refused, not which.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import anyio
import anyio.to_thread

from watcherd.config import HookConfig, NotifyHook
from watcherd.errors import HookError
from watcherd.hooks.outcome import Outcome
from watcherd.hooks.payload import render, template_fields

INSTALL_HINT: Final = "notify hooks need apprise: pip install 'watcherd[notify]'"


def require_apprise() -> Any:
    """The apprise module, or a HookError saying how to install it."""
    try:
        import apprise
    except ImportError as exc:
        raise HookError(INSTALL_HINT) from exc
    return apprise


def parse_urls(text: str) -> list[str]:
    """Apprise URLs from a secret: one a line; blank lines and `#` comments skipped."""
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


async def send_notification(
    hook: HookConfig, notify: NotifyHook, payload: Mapping[str, Any], *, urls: list[str]
) -> Outcome:
    """Send one attempt of a notify hook to every URL; see the module docstring."""
    apprise = require_apprise()
    if not urls:
        return Outcome.give_up("no notification URLs configured")
    fields = template_fields(payload)
    title = render(notify.title, fields)
    body = render(notify.template, fields)
    sender = apprise.Apprise()
    for number, url in enumerate(urls, start=1):
        if not sender.add(url):
            return Outcome.give_up(f"notify URL #{number} ({_scheme(url)}) is not valid")
    with anyio.move_on_after(hook.timeout) as deadline:
        sent = await anyio.to_thread.run_sync(
            lambda: bool(sender.notify(title=title, body=body)), abandon_on_cancel=True
        )
    if deadline.cancelled_caught:
        return Outcome.retry(f"notification not sent within {hook.timeout:g}s")
    if not sent:
        return Outcome.retry(f"apprise reported a failure for at least one of {len(urls)} URLs")
    return Outcome.delivered()


def _scheme(url: str) -> str:
    """The scheme of a URL, the only part safe to show."""
    scheme, sep, _ = url.partition("://")
    return f"{scheme}://" if sep and scheme.isalnum() else "unrecognised scheme"
