"""Bodies built to break the client: numbers past a float, deep nesting, reserved statuses."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from tests.test_api_client import make, reply
from watcherd.api.client import ApiClient
from watcherd.config import ApiConfig, Config, PollConfig
from watcherd.errors import ClientRequestError, MalformedResponseError
from watcherd.store import Store
from watcherd.store.numbers import number, text_number
from watcherd.watch.poller import Poller

pytestmark = pytest.mark.anyio

#: An integer JSON accepts and Python keeps exactly, but no float can hold.
HUGE = 10**400
JSON = {"content-type": "application/json"}


def body(obj: Any) -> bytes:
    """JSON text of `obj`; Python writes big integers digit by digit, as a server may."""
    return json.dumps(obj).encode()


def job(**fields: Any) -> dict[str, Any]:
    """A running job object with extra fields."""
    return {"id": "ft-abc", "status": "running", **fields}


def nested(depth: int) -> dict[str, Any]:
    """An object nested `depth` levels deep."""
    inner: dict[str, Any] = {}
    for _ in range(depth - 1):
        inner = {"a": inner}
    return inner


def eta(value: Any) -> dict[str, Any]:
    """A `progress` object carrying `seconds_remaining`."""
    return {"estimate_available": True, "seconds_remaining": value}


@pytest.mark.parametrize("value", [HUGE, -HUGE], ids=["plus", "minus"])
async def test_a_metric_value_too_big_for_a_float_is_malformed(value: int) -> None:
    """A metric value of 400 digits refuses the page: the store could not hold it."""
    row = {"train/global_step": 1, "train/loss": value, "timestamp": 5}
    client = make(reply(body({"metrics": [row]})))
    with pytest.raises(MalformedResponseError, match="train/loss"):
        await client.metrics("ft-abc")


async def test_big_integers_that_fit_a_float_are_kept_exactly() -> None:
    """2**70 as a metric value and 10**300 seconds remaining are numbers, not errors."""
    row = {"train/global_step": 1, "train/tokens": 2**70, "timestamp": 5}
    client = make(reply(body({"metrics": [row]})))
    assert await client.metrics("ft-abc") == [row]
    client = make(reply(body(job(progress=eta(10**300)))))
    assert (await client.retrieve("ft-abc")).seconds_remaining == 1e300


async def test_seconds_remaining_too_big_for_a_float_is_malformed() -> None:
    """A 400-digit `seconds_remaining` refuses the job object instead of raising OverflowError."""
    client = make(reply(body(job(progress=eta(HUGE)))))
    with pytest.raises(MalformedResponseError, match="seconds_remaining"):
        await client.retrieve("ft-abc")


async def test_a_huge_number_on_any_listed_job_refuses_the_listing() -> None:
    """The listing is one page: a bad number on another job makes all of it malformed."""
    other = {"id": "ft-other", "status": "queued", "progress": eta(HUGE)}
    client = make(reply(body({"data": [job(), other]})))
    with pytest.raises(MalformedResponseError):
        await client.list_jobs()


@pytest.mark.parametrize("other", [{"status": "running"}, {"id": None, "status": "queued"}])
async def test_a_listed_job_without_an_id_is_skipped(tmp_path: Path, other: dict[str, Any]) -> None:
    """An entry lacking a string `id` (no job watcherd could watch) is skipped: the poller
    keeps its one list request instead of a refused listing and a retrieve per job."""
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        if request.url.path.endswith("/fine-tunes"):
            listing = [job(id="ft-a"), other, job(id="ft-b")]
            return httpx.Response(200, content=body({"data": listing}), headers=JSON)
        if request.url.path.endswith("/metrics"):
            return httpx.Response(200, json={"metrics": []})
        if request.url.path.endswith("/events"):
            return httpx.Response(200, json={"data": []})
        return httpx.Response(200, json=job(id=request.url.path.rsplit("/", 1)[-1]))

    statuses, logs = await _poll_two(tmp_path, handler)
    assert statuses == {"ft-a": "running", "ft-b": "running"}
    retrieves = [p for p in paths if p.count("/") == 3]  # /v1/fine-tunes/ft-x
    assert (paths.count("/v1/fine-tunes"), retrieves) == (1, [])
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == []


async def test_a_job_listed_twice_is_retrieved_not_taken_from_either_entry(tmp_path: Path) -> None:
    """ft-a listed as completed, then as running: neither entry is trusted; ft-a is
    retrieved alone (it is running), ft-b still comes from the listing, and it is logged."""
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        if request.url.path.endswith("/fine-tunes"):
            listing = [job(id="ft-a", status="completed"), job(id="ft-b"), job(id="ft-a")]
            return httpx.Response(200, content=body({"data": listing}), headers=JSON)
        if request.url.path.endswith("/metrics"):
            return httpx.Response(200, json={"metrics": []})
        if request.url.path.endswith("/events"):
            return httpx.Response(200, json={"data": []})
        return httpx.Response(200, json=job(id=request.url.path.rsplit("/", 1)[-1]))

    statuses, logs = await _poll_two(tmp_path, handler)
    assert statuses == {"ft-a": "running", "ft-b": "running"}
    assert [p for p in paths if p.count("/") == 3] == ["/v1/fine-tunes/ft-a"]
    warned = [e for e in logs if e["log_level"] == "warning"]
    assert [(e["event"], e["job_ids"]) for e in warned] == [("api.list_repeated_id", ["ft-a"])]


async def test_a_deeply_nested_job_object_is_malformed() -> None:
    """A job object 600 levels deep (json.loads takes it) is refused before anyone walks it."""
    client = make(reply(body(job(x=nested(600)))))
    with pytest.raises(MalformedResponseError, match="nested"):
        await client.retrieve("ft-abc")
    client = make(reply(body({"data": [job(x=nested(600))]})))
    with pytest.raises(MalformedResponseError, match="nested"):
        await client.list_jobs()


async def test_a_job_object_of_ordinary_depth_is_kept() -> None:
    """Nesting 20 levels deep (far more than the service uses) is still a job."""
    obj = job(x=nested(20))
    client = make(reply(body(obj)))
    assert (await client.retrieve("ft-abc")).raw == obj


async def test_deeply_nested_events_are_malformed() -> None:
    """Events nested 600 levels deep are refused like a deep job."""
    client = make(reply(body({"data": [nested(600)]})))
    with pytest.raises(MalformedResponseError, match="nested"):
        await client.events("ft-abc")


async def test_a_server_status_missing_is_refused() -> None:
    """`missing` is watcherd's own verdict on a 404; a server saying it is malformed."""
    client = make(reply(body(job(status="missing"))))
    with pytest.raises(MalformedResponseError, match="missing"):
        await client.retrieve("ft-abc")


async def test_a_redirect_error_names_its_location() -> None:
    """A 302 is refused (never followed), and the message says where it pointed."""
    client = make(reply(b"", 302, location="https://elsewhere.test/v1/fine-tunes/ft-abc"))
    with pytest.raises(ClientRequestError, match=r"elsewhere\.test"):
        await client.retrieve("ft-abc")


def test_store_numbers_never_raise_on_huge_integers() -> None:
    """A huge integer already in a database reads as ±inf instead of raising OverflowError."""
    assert number(HUGE) == float("inf") and number(-HUGE) == float("-inf")
    assert text_number(str(-HUGE)) == float("-inf")


async def test_a_listing_with_a_huge_number_does_not_stop_the_poller(tmp_path: Path) -> None:
    """The listing is refused and logged; each watched job is still polled by retrieve."""

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/fine-tunes"):
            other = {"id": "ft-unwatched", "status": "running", "progress": eta(HUGE)}
            listing = [job(id="ft-a"), job(id="ft-b"), other]
            return httpx.Response(200, content=body({"data": listing}), headers=JSON)
        if path.endswith("/metrics"):
            return httpx.Response(200, json={"metrics": []})
        return httpx.Response(200, json=job(id=path.rsplit("/", 1)[-1]))

    statuses, logs = await _poll_two(tmp_path, handler)
    assert statuses == {"ft-a": "running", "ft-b": "running"}
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["poll.list_failed"]


async def _poll_two(
    tmp_path: Path, handler: Callable[[httpx.Request], httpx.Response]
) -> tuple[dict[str, str | None], list[MutableMapping[str, Any]]]:
    """One round of the real poller over ft-a and ft-b: their statuses and the logs."""
    config = Config(api=ApiConfig(base_url="http://sim.test", max_rate=0), poll=PollConfig())
    async with (
        Store.open(tmp_path / "w.db", writer=True) as store,
        httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http,
    ):
        await store.sync_watched([("ft-a", None), ("ft-b", None)], time.time())
        poller = Poller(store, ApiClient.from_config(http, config.api, "k"), config)
        await poller.load_jobs()
        with capture_logs() as logs:
            await poller.poll_once()
        return {j.job_id: j.status for j in await store.overview()}, logs


def not_utf8(obj: dict[str, Any]) -> bytes:
    """JSON text of `obj` with its `"BAD"` string made a byte no UTF-8 text holds."""
    return body(obj).replace(b'"BAD"', b'"\xff"')


async def test_a_job_body_that_is_not_utf8_is_malformed() -> None:
    """A byte that is not UTF-8, even in a field the poller never reads, refuses the body
    (as `json.loads` does): the object could not be decoded when it is stored."""
    client = make(reply(not_utf8(job(suffix="BAD"))))
    with pytest.raises(MalformedResponseError, match="invalid JSON"):
        await client.retrieve("ft-abc")
    client = make(reply(not_utf8({"data": [job(suffix="BAD")]})))
    with pytest.raises(MalformedResponseError, match="invalid JSON"):
        await client.list_jobs()


async def test_a_listing_that_is_not_utf8_does_not_stop_the_poller(tmp_path: Path) -> None:
    """The listing is refused and logged; each watched job is still polled by retrieve."""

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/fine-tunes"):
            listing = [job(id="ft-a", suffix="BAD"), job(id="ft-b")]
            return httpx.Response(200, content=not_utf8({"data": listing}), headers=JSON)
        if path.endswith("/metrics"):
            return httpx.Response(200, json={"metrics": []})
        if path.endswith("/events"):
            return httpx.Response(200, json={"data": []})
        return httpx.Response(200, json=job(id=path.rsplit("/", 1)[-1]))

    statuses, logs = await _poll_two(tmp_path, handler)
    assert statuses == {"ft-a": "running", "ft-b": "running"}
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["poll.list_failed"]
