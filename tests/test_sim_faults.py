"""Fault injection: every kind appears on the wire as documented, from a seeded plan."""

from __future__ import annotations

import email.utils
import json
import random
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from tests.simharness import get_bytes, raw_request, small_world
from watcherd.sim import FAULT_KINDS, FaultSpecError, SimServer, parse_faults, run_in_thread
from watcherd.sim.faults import FaultDraw


@pytest.fixture(scope="module")
def sim() -> Iterator[SimServer]:
    """A simulator whose faults each test sets."""
    world, _ = small_world()
    with run_in_thread(world) as server:
        yield server


def _only(server: SimServer, kind: str, extra: str = "") -> str:
    """Make every request get fault `kind`; return a job's metrics path."""
    server.set_faults(f"{kind}=1{extra}")
    return f"/v1/fine-tunes/{server.world.job_ids()[0]}/metrics"


def test_parse_spreads_a_bare_number_over_every_kind() -> None:
    """`0.2` gives each of the ten kinds 0.02; named kinds and knobs parse too."""
    spec = parse_faults("0.2")
    assert set(spec.rates) == set(FAULT_KINDS) and spec.total == pytest.approx(0.2)
    spec = parse_faults("429=0.05, reset=0.02,retry-after=2,stall-seconds=0.5")
    assert spec.rates == {"429": 0.05, "reset": 0.02}
    assert (spec.retry_after, spec.stall_seconds) == (2.0, 0.5)
    for bad in ("teapot=0.1", "429=x", "0.7,500=0.5"):
        with pytest.raises(FaultSpecError):
            parse_faults(bad)


def test_429_cycles_through_the_three_retry_after_forms(sim: SimServer) -> None:
    """Successive 429s carry Retry-After seconds, an HTTP date, then retry-after-ms."""
    path = _only(sim, "429", ",retry-after=2")
    replies = [
        httpx.get(sim.base_url + path, headers={"Authorization": "Bearer x"}) for _ in range(3)
    ]
    assert [r.status_code for r in replies] == [429, 429, 429]
    assert replies[0].headers["retry-after"] == "2"
    date = email.utils.parsedate_to_datetime(replies[1].headers["retry-after"])
    assert 1 <= date.timestamp() - time.time() <= 3.5
    assert replies[2].headers["retry-after-ms"] == "2000"
    assert "retry-after" not in replies[2].headers
    assert replies[0].json()["error"]["type"] == "rate_limit_exceeded"
    retry_at = [r.retry_at for r in sim.stats.snapshot()[-3:]]
    assert all(t is not None and t > time.time() for t in retry_at)


@pytest.mark.parametrize(("kind", "status"), [("500", 500), ("503", 503)])
def test_server_errors_use_the_envelope(sim: SimServer, kind: str, status: int) -> None:
    """500 and 503 carry the error envelope; 503 also a Retry-After."""
    path = _only(sim, kind)
    reply = httpx.get(sim.base_url + path, headers={"Authorization": "Bearer x"})
    assert reply.status_code == status and "message" in reply.json()["error"]
    assert ("retry-after" in reply.headers) == (kind == "503")


@pytest.mark.parametrize(("kind", "status"), [("html", 200), ("html502", 502)])
def test_html_error_pages(sim: SimServer, kind: str, status: int) -> None:
    """HTML pages come as text/html with 200 or 502."""
    path = _only(sim, kind)
    reply = httpx.get(sim.base_url + path, headers={"Authorization": "Bearer x"})
    assert reply.status_code == status
    assert reply.headers["content-type"].startswith("text/html") and "<html>" in reply.text


def test_truncated_json_is_a_complete_response_with_bad_json(sim: SimServer) -> None:
    """A truncated body matches its Content-Length but is not valid JSON."""
    path = _only(sim, "truncated")
    reply = httpx.get(sim.base_url + path, headers={"Authorization": "Bearer x"})
    assert reply.status_code == 200 and int(reply.headers["content-length"]) == len(reply.content)
    with pytest.raises(json.JSONDecodeError):
        json.loads(reply.content)


def test_reset_cuts_the_body_with_a_tcp_reset(sim: SimServer) -> None:
    """The head promises the full body; half of it arrives, then the connection resets."""
    path = _only(sim, "reset")
    data = raw_request(sim.port, get_bytes(path))
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(b":")[
            1
        ]
    )
    assert len(body.removesuffix(b"<RESET>")) < length
    with pytest.raises(httpx.HTTPError):
        httpx.get(sim.base_url + path, headers={"Authorization": "Bearer x"})


def test_stall_sends_nothing_for_the_stall_time(sim: SimServer) -> None:
    """A stalled request gets no byte before stall-seconds, then the connection closes."""
    path = _only(sim, "stall", ",stall-seconds=0.6")
    start = time.monotonic()
    assert raw_request(sim.port, get_bytes(path)) in (b"", b"<RESET>")
    assert time.monotonic() - start >= 0.55
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(sim.base_url + path, headers={"Authorization": "Bearer x"}, timeout=0.2)
    assert any(r.fault == "stall" and r.status is None for r in sim.stats.snapshot())


def test_drip_delivers_a_valid_body_slowly(sim: SimServer) -> None:
    """A dripped body arrives whole and valid, but only after drip-seconds."""
    path = _only(sim, "drip", ",drip-seconds=0.5")
    start = time.monotonic()
    chunks = []
    with httpx.stream("GET", sim.base_url + path, headers={"Authorization": "Bearer x"}) as reply:
        chunks = list(reply.iter_raw())
    assert time.monotonic() - start >= 0.45
    assert len(chunks) > 5 and "metrics" in json.loads(b"".join(chunks))


def test_oversized_body_has_the_configured_size(sim: SimServer) -> None:
    """An oversized body is valid JSON padded to oversize-bytes."""
    path = _only(sim, "oversized", ",oversize-bytes=3000000")
    reply = httpx.get(sim.base_url + path, headers={"Authorization": "Bearer x"})
    assert len(reply.content) == 3_000_000 and "metrics" in reply.json()


def test_fault_choice_is_seeded(sim: SimServer) -> None:
    """The same spec and seed fault the same requests; counts are recorded."""

    def run() -> list[str | None]:
        sim.set_faults("429=0.3,500=0.3,seed=5")
        sim.stats.reset()
        for _ in range(20):
            httpx.get(sim.base_url + "/v1/fine-tunes", headers={"Authorization": "Bearer x"})
        return [r.fault for r in sim.stats.snapshot()]

    first = run()
    assert first == run()
    assert sim.stats.by_fault["429"] + sim.stats.by_fault["500"] == sum(
        f is not None for f in first
    )
    sim.set_faults(None)


def test_every_kind_comes_once_in_each_round_of_faults() -> None:
    """Equal rates: each round of len(KINDS) faults holds every kind once, in a seeded order."""
    spec = parse_faults("0.2")
    for seed in range(200):
        draw = FaultDraw(spec, random.Random(seed))
        faults = [kind for kind in (draw.next() for _ in range(400)) if kind is not None]
        rounds = [faults[i : i + len(FAULT_KINDS)] for i in range(0, len(faults), len(FAULT_KINDS))]
        assert all(sorted(r) == sorted(FAULT_KINDS) for r in rounds[:-1]), seed
        assert len(set(map(tuple, rounds[:-1]))) > 1, seed


def test_unequal_rates_keep_each_kind_within_one_fault_of_its_share() -> None:
    """Kinds are dealt in proportion to their rates: never more than one fault off, at any point."""
    spec = parse_faults("429=0.3,500=0.1,stall=0.05,seed=3")
    draw, seen = FaultDraw(spec, random.Random(3)), Counter[str]()
    for _ in range(3000):
        kind = draw.next()
        if kind is not None:
            seen[kind] += 1
            total = sum(seen.values())
            for k, rate in spec.rates.items():
                assert abs(seen[k] - total * rate / spec.total) <= 1.0 + 1e-9, (k, seen)
    assert 0.40 <= sum(seen.values()) / 3000 <= 0.50


def test_no_rates_means_no_faults() -> None:
    """An empty plan never faults and draws nothing."""
    rng = random.Random(1)
    draw = FaultDraw(parse_faults(None), rng)
    assert [draw.next() for _ in range(50)] == [None] * 50
    assert rng.random() == random.Random(1).random()


def test_keep_alive_serves_many_requests_on_one_connection(sim: SimServer) -> None:
    """One httpx client reuses one connection; max in-flight reflects concurrency."""
    sim.set_faults(None)
    sim.stats.reset()
    with httpx.Client(base_url=sim.base_url, headers={"Authorization": "Bearer x"}) as client:
        assert all(client.get("/v1/fine-tunes").status_code == 200 for _ in range(5))
    assert sim.stats.total == 5 and sim.stats.max_in_flight == 1
