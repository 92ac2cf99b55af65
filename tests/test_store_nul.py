"""A NUL character in any text the store keeps (server strings, hook output), on both
backends: PostgreSQL text cannot hold one, so it is written as U+FFFD there."""

from __future__ import annotations

from pathlib import Path

import pytest

from watcherd.store import HookSub, PollRecord
from watcherd.store.opening import open_store

pytestmark = pytest.mark.anyio

HOOKS = (HookSub("deploy", ("completed",)),)
EVENTS = [{"created_at": "2026-05-19T13:01:02Z", "type": "job_er\0ror", "message": "bo\0om"}]


def _kept(text: str, target: str | Path) -> str:
    """`text` as the backend gives it back: exact on SQLite, NUL as U+FFFD on PostgreSQL."""
    return text if isinstance(target, Path) else text.replace("\0", "\ufffd")


async def test_server_strings_holding_nul_are_recorded(store_target: str | Path) -> None:
    """A job whose status, model and event log hold NUL is recorded, not refused."""
    job = {"id": "ft-a", "status": "runn\0ing", "model": "lla\0ma", "error": "x\0y"}
    async with open_store(store_target, writer=True) as store:
        await store.sync_watched([("ft-a", None), ("ft-b", None)], 1.0)
        await store.record_poll(PollRecord("ft-a", 2.0, job, "runn\0ing", events=EVENTS))
        await store.record_poll(PollRecord("ft-b", 2.0, {"id": "ft-b"}, "running"))
        found = {j.job_id: j for j in await store.overview()}
        events = await store.events("ft-a")
    assert found["ft-a"].status == _kept("runn\0ing", store_target)
    assert found["ft-a"].model == _kept("lla\0ma", store_target)
    assert found["ft-b"].status == "running"
    assert [e["message"] for e in events] == ["bo\0om"]  # the event's JSON text is exact


async def test_hook_output_holding_nul_is_recorded(store_target: str | Path) -> None:
    """A hook that printed a NUL byte is finished as delivered, its output kept."""
    async with open_store(store_target, writer=True) as store:
        await store.sync_watched([("ft-a", None)], 1.0)
        await store.record_poll(PollRecord("ft-a", 100.0, None, "completed", (), HOOKS))
        await store.start_attempt("ft-a:completed:deploy", 101.0)
        await store.finish_attempt(
            "ft-a:completed:deploy",
            102.0,
            outcome="delivered",
            error=None,
            output_tail="a\0b",
            next_attempt_at=None,
        )
        (delivery,) = await store.deliveries("ft-a")
    assert delivery.state == "delivered"
    assert delivery.output_tail == _kept("a\0b", store_target)
