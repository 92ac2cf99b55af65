"""Metric filters over HTTP agree with filter_metrics on the true history (hypothesis)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.simharness import NOW, small_world
from watcherd.model import MetricFilter, filter_metrics, format_ns, loads_exact
from watcherd.sim import ManualClock, SimServer, World, run_in_thread

_NS = 1_000_000_000
_T = int(NOW * _NS)


@pytest.fixture(scope="module")
def client() -> Iterator[tuple[httpx.Client, SimServer]]:
    """An httpx client on a module-wide simulator."""
    world, _ = small_world()
    with (
        run_in_thread(world) as server,
        httpx.Client(base_url=server.base_url, headers={"Authorization": "Bearer x"}) as http,
    ):
        yield http, server


steps = st.none() | st.integers(min_value=-5, max_value=520)
times = st.none() | st.integers(min_value=_T - 4000 * _NS, max_value=_T + 10 * _NS)


@settings(max_examples=150, deadline=None)
@given(
    job=st.integers(min_value=0, max_value=4),
    gfrom=steps,
    gto=steps,
    lfrom=times,
    lto=times,
    resolution=st.none() | st.integers(min_value=1, max_value=60),
)
def test_http_filters_match_the_truth(
    client: tuple[httpx.Client, SimServer],
    job: int,
    gfrom: int | None,
    gto: int | None,
    lfrom: int | None,
    lto: int | None,
    resolution: int | None,
) -> None:
    """Any mix of step bounds, time bounds and resolution gives filter_metrics(visible rows)."""
    http, server = client
    job_id = server.world.job_ids()[job]
    lfrom = None if lfrom is None else lfrom // 1000 * 1000  # ISO text carries microseconds
    lto = None if lto is None else lto // 1000 * 1000
    flt = MetricFilter(gfrom, gto, lfrom, lto, resolution)
    params: dict[str, Any] = {
        "global_step_from": gfrom,
        "global_step_to": gto,
        "logged_at_from": None if lfrom is None else format_ns(lfrom),
        "logged_at_to": None if lto is None else format_ns(lto),
        "resolution": resolution,
    }
    reply = http.get(
        f"/v1/fine-tunes/{job_id}/metrics",
        params={k: v for k, v in params.items() if v is not None},
    )
    assert reply.status_code == 200
    want = filter_metrics(server.world.visible_rows(job_id), flt)
    assert loads_exact(reply.content)["metrics"] == want


def test_filters_in_a_json_body_are_honoured(client: tuple[httpx.Client, SimServer]) -> None:
    """A GET body with the four filters works like the query string (the query wins)."""
    http, server = client
    job_id = server.world.job_ids()[0]
    body = {"global_step_from": 5, "global_step_to": 30, "logged_at_from": format_ns(0)}
    url = f"/v1/fine-tunes/{job_id}/metrics"
    reply = http.request("GET", url, json=body, params={"global_step_to": 20})
    want = filter_metrics(
        server.world.visible_rows(job_id), MetricFilter(global_step_from=5, global_step_to=20)
    )
    assert loads_exact(reply.content)["metrics"] == want


@pytest.mark.parametrize(
    "query",
    ["global_step_from=x", "global_step_to=1.5", "resolution=0", "logged_at_from=yesterday"],
)
def test_bad_parameters_give_400(client: tuple[httpx.Client, SimServer], query: str) -> None:
    """A bad filter value is a 400 error envelope naming the parameter."""
    http, server = client
    reply = http.get(f"/v1/fine-tunes/{server.world.job_ids()[0]}/metrics?{query}")
    assert reply.status_code == 400
    assert reply.json()["error"]["param"] == query.split("=")[0]


def test_nan_is_written_literally_and_ints_stay_exact() -> None:
    """Timestamps arrive as exact integers; a NaN loss is written as NaN."""
    world = World(
        {"jobs": [{"steps": 10, "diverge_at": 5, "created": "-1h"}]}, clock=ManualClock(NOW)
    )
    with run_in_thread(world) as server:
        reply = httpx.get(
            f"{server.base_url}/v1/fine-tunes/{world.job_ids()[0]}/metrics",
            headers={"Authorization": "Bearer x"},
        )
    assert b"NaN" in reply.content
    rows = loads_exact(reply.content)["metrics"]
    assert [r["timestamp"] for r in rows] == [
        r["timestamp"] for r in world.truth(world.job_ids()[0])
    ]
    assert all(isinstance(r["timestamp"], int) for r in rows)
