"""The bad-bodies battery: the real poller, store and client against a server that lies."""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from tests.battery.sizes import report
from tests.faultserver import JSON, FaultServer, Reply, gzip_bomb, json_reply
from watcherd.api.client import ApiClient
from watcherd.config import ApiConfig, Config, PollConfig
from watcherd.store import Store
from watcherd.watch.poller import Poller

pytestmark = pytest.mark.anyio

KEY = "sk-bodies-SECRET"
JOB_ID = "ft-bodies"
NS = 1_779_196_000_000_000_000
MiB = 1024 * 1024
CAP = 8 * MiB
HTML = b"<!DOCTYPE html><html><body><h1>Service Error</h1></body></html>"


def job(status: str = "running") -> dict[str, Any]:
    """A job object as the service sends it."""
    return {"id": JOB_ID, "status": status, "model": "m", "model_output_name": "out"}


def row(step: int, loss: float | int = 1.0, ts: Any = None) -> dict[str, Any]:
    """A train metric row."""
    return {
        "train/global_step": step,
        "train/loss": loss,
        "timestamp": NS + step if ts is None else ts,
    }


def raw_json(text: str, status: int = 200) -> Reply:
    """A reply whose body is `text` verbatim, labelled JSON."""
    return Reply(status=status, body=text.encode(), headers=JSON)


def metrics(*rows: dict[str, Any]) -> Reply:
    """A metrics page."""
    return json_reply({"metrics": list(rows)})


@dataclass(frozen=True, slots=True)
class Case:
    """Replies for one poll (retrieve, then metrics) and the log event it must produce."""

    name: str
    replies: tuple[Reply, ...]
    event: str | None  # the one warning/error expected; None: a clean poll
    rows: int = 0  # rows the poll adds
    transition: str | None = None  # the status the poll records, if it changes


FAILED = "poll.failed"
#: A bad metrics page: the job's status (fetched fine) is recorded, the rows are not.
METRICS_FAILED = "poll.metrics_failed"
#: An integer no float can hold (json.loads keeps it exactly).
HUGE = 10**400
ETA = {"estimate_available": True, "seconds_remaining": HUGE}


def nested(depth: int) -> dict[str, Any]:
    """An object nested `depth` levels deep (json.loads takes up to about 990)."""
    inner: dict[str, Any] = {}
    for _ in range(depth - 1):
        inner = {"a": inner}
    return inner


NAN_ROW = '{"metrics": [{"train/global_step": 9, "train/loss": 1.0, "timestamp": NaN}]}'


def html(status: int = 200) -> Reply:
    """An HTML error page."""
    return Reply(status=status, body=HTML, headers=(("content-type", "text/html"),))


def then(reply: Reply) -> tuple[Reply, Reply]:
    """A good retrieve, then `reply` for the metrics request."""
    return (json_reply(job()), reply)


CASES = [
    Case("html 200", (html(),), FAILED),
    Case("html 502", (html(502),), FAILED),
    Case("truncated json", (raw_json(json.dumps(job())[:20]),), FAILED),
    Case("job status of the wrong type", (json_reply({"id": JOB_ID, "status": 5}),), FAILED),
    Case("job body a list", (json_reply([job()]),), FAILED),
    Case("empty 200", (raw_json(""),), FAILED),
    Case("50 MB body", (raw_json("[" + " " * (50 * MiB) + "]"),), FAILED),
    Case(
        "50 MB, no length",
        (Reply(body=b" " * (50 * MiB), headers=JSON, content_length=-1),),
        FAILED,
    ),
    Case("gzip bomb", (gzip_bomb(64 * MiB),), FAILED),
    Case("deep nesting", (raw_json("[" * 200_000 + "]" * 200_000),), FAILED),
    Case("deep nesting in an error", (raw_json("[" * 60_000, status=500),), FAILED),
    Case("401", (json_reply({"error": {"message": "bad key"}}, status=401),), "api.auth_failed"),
    Case("404", (json_reply({"error": {"message": "no such job"}}, status=404),), "poll.not_found"),
    Case("metrics null", then(json_reply({"metrics": None})), None),
    Case("metrics a string", then(json_reply({"metrics": "none"})), METRICS_FAILED),
    Case("loss a string", then(metrics(row(9), {**row(10), "train/loss": "x"})), METRICS_FAILED),
    Case("step missing", then(metrics({"train/loss": 1.0})), METRICS_FAILED),
    Case(
        "step a float", then(metrics(row(9), row(10) | {"train/global_step": 10.5})), METRICS_FAILED
    ),
    Case("timestamp NaN", then(raw_json(NAN_ROW)), METRICS_FAILED),
    Case("timestamp Infinity", then(metrics(row(9, ts=math.inf))), METRICS_FAILED),
    Case("timestamp beyond 64 bits", then(metrics(row(9, ts=2**70))), METRICS_FAILED),
    Case("step beyond 64 bits", then(metrics(row(2**70))), METRICS_FAILED),
    Case(
        "truncated metrics", then(raw_json('{"metrics": [{"train/global_step": 4')), METRICS_FAILED
    ),
    Case("metrics html", then(html()), METRICS_FAILED),
    Case(
        "NaN, ±Infinity",
        then(metrics(row(4, math.nan), row(5, math.inf), row(6, -math.inf))),
        None,
        rows=3,
    ),
    Case(
        "duplicate, backward steps",
        then(metrics(row(8), row(8), row(7), row(3), row(8))),
        None,
        rows=3,
    ),
    Case("metric value beyond a float", then(metrics(row(9, loss=HUGE))), METRICS_FAILED),
    Case("seconds_remaining beyond a float", (json_reply(job() | {"progress": ETA}),), FAILED),
    Case("job nested 600 deep", (json_reply(job() | {"x": nested(600)}),), FAILED),
    Case("server status 'missing'", (json_reply(job("missing")),), FAILED),
    Case(
        "unknown status",
        (json_reply(job("paused")), metrics()),
        "job.unknown_status",
        transition="paused",
    ),
]


@pytest.fixture
async def server() -> AsyncIterator[FaultServer]:
    """A loopback server answering with whatever each case queues."""
    async with FaultServer.running(json_reply(job())) as running:
        yield running


async def history(store: Store) -> dict[str, Any]:
    """What a poll may not change partially: rows, transitions, deliveries, the job object."""
    found = await store.job(JOB_ID)
    assert found is not None
    rows = await store.all_metrics(JOB_ID)
    return {
        "rows": len(rows),
        "metrics": repr(rows),  # repr: NaN equals NaN
        "transitions": await store.transitions(JOB_ID),
        "deliveries": await store.deliveries(),
        "status": found[0].status,
        "job": found[1],
    }


async def poll(store: Store, server: FaultServer, config: Config, *replies: Reply) -> None:
    """One poll of JOB_ID by a fresh poller and client (one attempt, no retries)."""
    server.push(*replies)
    async with httpx.AsyncClient() as http:
        api = ApiClient.from_config(http, config.api, KEY, max_attempts=1)
        poller = Poller(store, api, config)
        await poller.load_jobs()
        await poller.poll_once()


@pytest.mark.timeout(120)
async def test_bad_bodies_never_crash_nor_write_partially(
    server: FaultServer, tmp_path: Path
) -> None:
    """Each bad body: the poll survives, nothing partial is stored, one clear log line."""
    config = Config(
        api=ApiConfig(base_url=server.url, timeout=10.0, max_rate=0, max_body_bytes=CAP),
        poll=PollConfig(interval=1.0, min_interval=0.1, max_backoff=1.0),
    )
    async with Store.open(tmp_path / "w.db", writer=True) as store:
        await store.sync_watched([(JOB_ID, None)], 1.0)
        await poll(store, server, config, json_reply(job()), metrics(row(1), row(2)))
        failures = []
        for case in CASES:
            before = await history(store)
            with capture_logs() as logs:
                await poll(store, server, config, *case.replies)
            after = await history(store)
            loud = [e for e in logs if e["log_level"] in ("warning", "error")]
            events = [e["event"] for e in loud]
            expected = [] if case.event is None else [case.event]
            added = after["rows"] - before["rows"]
            unchanged = case.rows == 0 and case.transition is None
            moved = after["status"] != before["status"]
            if (
                events != expected
                or (unchanged and after != before)
                or added != case.rows
                or (moved and after["status"] != case.transition)
            ):
                failures.append((case.name, events, added, loud))
            elif loud:
                detail = str(loud[0].get("error", loud[0].get("status")))[:150]
                print(f"bad bodies: {case.name}: {loud[0]['event']}: {detail}")
        report("bad bodies", cases=len(CASES), failed=len(failures))
        kept = {
            int(r["train/global_step"]): r["train/loss"] for r in await store.all_metrics(JOB_ID)
        }
    assert not failures, failures
    assert math.isnan(kept[4]) and kept[5] == math.inf and kept[6] == -math.inf
