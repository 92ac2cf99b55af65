"""Delivery states: one enum, stored and shown as the same text as before."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest

from watcherd.model import SETTLED_DELIVERIES, WAITING_DELIVERIES, DeliveryState
from watcherd.store import HookSub, PollRecord, Store
from watcherd.store.schema import MIGRATIONS
from watcherd.views.hooks import deliveries_json

pytestmark = pytest.mark.anyio

HOOKS = (HookSub("deploy", ("completed",)),)


async def test_the_store_keeps_the_text_and_reads_back_the_enum(tmp_path: Path) -> None:
    """The row holds 'pending' as plain text; the read model holds DeliveryState.PENDING."""
    async with Store.open(tmp_path / "w.db", writer=True) as store:
        await store.sync_watched([("ft-a", None)], 1.0)
        await store.record_poll(PollRecord("ft-a", 100.0, None, "completed", (), HOOKS))
        (delivery,) = await store.deliveries()
    assert type(delivery.state) is DeliveryState
    assert delivery.state is DeliveryState.PENDING
    with sqlite3.connect(tmp_path / "w.db") as conn:
        assert conn.execute("SELECT state, typeof(state) FROM deliveries").fetchall() == [
            ("pending", "text")
        ]
    (shown,) = json.loads(json.dumps(deliveries_json([delivery])))
    assert shown["state"] == "pending"


def test_the_states_are_the_schemas_and_each_is_waiting_settled_or_running() -> None:
    """The enum's texts are those the deliveries table's CHECK allows; no state is in two groups."""
    checks = [
        re.search(r"CHECK \(state IN \(([^)]*)\)\)", sql)
        for migration in MIGRATIONS
        for sql in migration.statements
    ]
    (allowed,) = [m[1] for m in checks if m]
    assert {s.strip(" '") for s in allowed.split(",")} == {str(s) for s in DeliveryState}
    assert WAITING_DELIVERIES | SETTLED_DELIVERIES | {DeliveryState.RUNNING} == set(DeliveryState)
    assert not WAITING_DELIVERIES & SETTLED_DELIVERIES
