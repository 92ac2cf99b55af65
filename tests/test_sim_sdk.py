"""The real `together` SDK against the simulator over loopback: every response parses."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest
from together import AuthenticationError, BadRequestError, NotFoundError, Together

from tests.simharness import NOW, small_world
from watcherd.model import MetricFilter, filter_metrics, format_ns
from watcherd.sim import ManualClock, SimServer, World, run_in_thread

Sim = tuple[SimServer, World, ManualClock]


@pytest.fixture(scope="module")
def sim() -> Iterator[Sim]:
    """One simulator for the module, on a manual clock."""
    world, clock = small_world()
    with run_in_thread(world) as server:
        yield server, world, clock


@pytest.fixture
def client(sim: Sim) -> Together:
    """An SDK client pointed at the simulator, without retries."""
    return Together(base_url=sim[0].base_url, api_key="x", max_retries=0)


def _floats(rows: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: float(v) for k, v in r.items()} for r in rows]


def test_list_and_retrieve(client: Together, sim: Sim) -> None:
    """list() returns every job with its status; retrieve() the full object with events."""
    _, world, _ = sim
    listed = {d.id: d.status for d in client.fine_tuning.list().data}
    assert listed == {j: world.status_at(j) for j in world.job_ids()}
    job = world.job_ids()[0]
    full = client.fine_tuning.retrieve(job)
    assert full.id == job and full.status == "completed"
    assert full.training_type is not None and full.training_method is not None
    assert full.events and full.events[0].type == "job_pending"
    assert full.progress is not None and full.total_price and full.total_price > 0


def test_list_metrics_without_filters(client: Together, sim: Sim) -> None:
    """list_metrics returns the visible rows (the SDK turns numbers into floats)."""
    _, world, _ = sim
    for job in world.job_ids():
        got = client.fine_tuning.list_metrics(job).metrics or []
        assert got == _floats(world.visible_rows(job))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"global_step_from": 10},
        {"global_step_to": 12},
        {"global_step_from": 5, "global_step_to": 25, "resolution": 4},
        {"resolution": 1},
        {"global_step_from": 1000},
    ],
)
def test_list_metrics_step_filters(client: Together, sim: Sim, kwargs: dict[str, int]) -> None:
    """Step bounds and resolution give what filter_metrics gives on the visible rows."""
    _, world, _ = sim
    job = world.job_ids()[0]
    want = filter_metrics(world.visible_rows(job), MetricFilter(**kwargs))
    got = client.fine_tuning.list_metrics(job, **kwargs).metrics or []  # type: ignore[arg-type]
    assert got == _floats(want)


def test_list_metrics_time_filters_with_offsets(client: Together, sim: Sim) -> None:
    """logged_at bounds given as datetimes with UTC offsets select by the exact instant."""
    _, world, _ = sim
    job = world.job_ids()[1]
    rows = world.visible_rows(job)
    lo_ns, hi_ns = rows[5]["timestamp"], rows[20]["timestamp"]
    lo = datetime.fromtimestamp(lo_ns // 1000 / 1e6, tz=timezone(timedelta(hours=5, minutes=30)))
    hi = datetime.fromtimestamp(hi_ns // 1000 / 1e6 + 1e-6, tz=timezone(timedelta(hours=-7)))
    lo_us, hi_us = lo_ns // 1000 * 1000, hi_ns // 1000 * 1000 + 1000
    flt = MetricFilter(logged_at_from=lo_us, logged_at_to=hi_us)
    got = client.fine_tuning.list_metrics(job, logged_at_from=lo, logged_at_to=hi).metrics or []
    assert got == _floats(filter_metrics(rows, flt))
    assert got[0]["train/global_step"] == rows[5]["train/global_step"]
    text = client.fine_tuning.list_metrics(job, logged_at_from=format_ns(lo_ns)).metrics or []
    assert len(text) == len(filter_metrics(rows, MetricFilter(logged_at_from=lo_ns // 1000 * 1000)))


def test_events_and_checkpoints(client: Together, sim: Sim) -> None:
    """Events and checkpoints parse and match the world."""
    _, world, _ = sim
    job = world.job_ids()[0]
    events = client.fine_tuning.list_events(job).data
    assert [e.type for e in events] == [e["type"] for e in world.events(job)]
    assert events[-1].type == "job_complete"
    checkpoints = client.fine_tuning.list_checkpoints(job).data
    assert checkpoints[0].checkpoint_type == "Final" and checkpoints[0].step == 40


def test_cancel_and_create(client: Together, sim: Sim) -> None:
    """create() makes a pending job, cancel() cancels it, a finished job cannot be cancelled."""
    world = sim[1]
    created = client.fine_tuning.create(
        training_file="file-abc", model="meta-llama/Llama-3-8b", n_epochs=2, n_evals=4, suffix="t"
    )
    assert created.status == "pending" and created.id in world.job_ids()
    assert world.job(created.id).spec.eval_steps == 25
    assert client.fine_tuning.cancel(created.id).status == "cancel_requested"
    assert client.fine_tuning.retrieve(created.id).status == "cancel_requested"
    with pytest.raises(BadRequestError):
        client.fine_tuning.cancel(world.job_ids()[0])


def test_whoami(client: Together) -> None:
    """whoami() parses as a project API key."""
    assert client.whoami().type == "project_api_key"


def test_errors_map_to_sdk_exceptions(sim: Sim) -> None:
    """Unknown IDs give 404, bad filters 400, a missing or non-bearer key 401."""
    server, _, _ = sim
    client = Together(base_url=server.base_url, api_key="x", max_retries=0)
    with pytest.raises(NotFoundError):
        client.fine_tuning.retrieve("ft-unknown")
    with pytest.raises(BadRequestError):
        client.fine_tuning.list_metrics(sim[1].job_ids()[0], resolution=0)
    for headers in ({}, {"Authorization": "Basic eDp4"}, {"Authorization": "Bearer"}):
        reply = httpx.get(f"{server.base_url}/v1/fine-tunes", headers=headers)
        assert reply.status_code == 401
        assert set(reply.json()["error"]) == {"message", "type", "param", "code"}


def test_api_key_must_match_when_configured() -> None:
    """With an api_key configured only that bearer key is accepted."""
    world = World({"jobs": []}, clock=ManualClock(NOW))
    with run_in_thread(world, api_key="sekrit") as server:
        with pytest.raises(AuthenticationError):
            Together(base_url=server.base_url, api_key="x", max_retries=0).fine_tuning.list()
        ok = Together(base_url=server.base_url, api_key="sekrit", max_retries=0)
        assert ok.fine_tuning.list().data == []
        assert [r.authorized for r in server.stats.snapshot()] == [False, True]


def test_now_is_utc() -> None:
    """The fixed test clock is the documented instant."""
    assert datetime.fromtimestamp(NOW, tz=UTC).isoformat() == "2026-05-19T13:06:40+00:00"
