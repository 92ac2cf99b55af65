"""A server that writes NaN as `null` (JavaScript's JSON.stringify does): the `nonfinite`
rule sees the null loss; a missing loss is no value; the row text stays as received."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from watcherd.api.client import ApiClient
from watcherd.config import ApiConfig, Config, PollConfig
from watcherd.store.opening import open_store
from watcherd.watch.poller import Poller

pytestmark = pytest.mark.anyio
T0 = 1_779_196_193_564_587_000
JOB = "ft-nulls"


def row(step: int, tail: str) -> str:
    """One row's text as a JavaScript server writes it, `tail` holding its losses."""
    return f'{{"timestamp":{T0 + step * 10**10},"train/global_step":{step}{tail}}}'


HEALTHY = [row(s, ',"train/loss":1.5') for s in range(1, 4)]


async def _poll(target: str | Path, texts: list[str]) -> None:
    """Poll JOB once, with a store at `target`, on a server answering `texts` as metrics."""
    body = ('{"metrics":[' + ",".join(texts) + "]}").encode()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/metrics"):
            return httpx.Response(200, content=body, headers={"content-type": "application/json"})
        return httpx.Response(200, json={"id": JOB, "status": "running"})

    config = Config(api=ApiConfig(base_url="http://sim.test", max_rate=0), poll=PollConfig())
    async with (
        open_store(target, writer=True) as store,
        httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http,
    ):
        await store.sync_watched([(JOB, None)], time.time())
        poller = Poller(store, ApiClient.from_config(http, config.api, "k"), config)
        await poller.load_jobs()
        await poller.poll_once()


@pytest.mark.parametrize(
    ("tail", "key"),
    [(',"train/loss":null', "train/loss"), (',"train/lr":1e-5,"eval/loss":null', "eval/loss")],
)
async def test_a_null_loss_opens_nonfinite(store_target: str | Path, tail: str, key: str) -> None:
    """`"train/loss": null` (or `eval/loss`) opens `nonfinite` at that step, named as NaN."""
    texts = [*HEALTHY, row(4, tail)]
    await _poll(store_target, texts)
    async with open_store(store_target, writer=False) as store:
        alerts = await store.alerts(JOB, open_only=True)
        stored = await store.metrics_json(JOB)
    assert [(a.rule, a.details["key"], a.details["step"]) for a in alerts] == [
        ("nonfinite", key, 4)
    ]
    assert f"{key} is NaN at step 4" in alerts[0].details["message"]
    assert stored == texts  # byte for byte, the null included


async def test_a_missing_loss_opens_nothing(store_target: str | Path) -> None:
    """A row without a loss key (a train row of other metrics) is no value: no alert."""
    texts = [*HEALTHY, row(4, ',"train/grad_norm":0.5')]
    await _poll(store_target, texts)
    async with open_store(store_target, writer=False) as store:
        assert await store.alerts(JOB, open_only=True) == []
        assert await store.metrics_json(JOB) == texts


async def test_a_null_train_loss_keeps_its_row_a_train_row(store_target: str | Path) -> None:
    """A row of only a null `train/loss` is the train row of its step: the eval row of the
    same step is stored beside it, not dropped as a duplicate."""
    texts = [*HEALTHY, row(4, ',"train/loss":null'), row(4, ',"eval/loss":2.5')]
    await _poll(store_target, texts)
    async with open_store(store_target, writer=False) as store:
        assert await store.metrics_json(JOB) == texts
