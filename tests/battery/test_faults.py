"""The faults battery: `run --until-done` against a simulator that fails 20 % of requests."""

from __future__ import annotations

import bisect
import itertools
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tests.battery.sizes import draw_seed, report, sized, wait_watching_rss
from tests.daemonharness import API_KEY, assert_exact, big_scenario, start_daemon, stored
from tests.daemonharness import write_config as harness_config
from watcherd.api.client import ApiClient
from watcherd.config import ApiConfig, Config, PollConfig
from watcherd.sim import FAULT_KINDS, RequestRecord, World, run_in_thread
from watcherd.store import Store
from watcherd.watch.poller import Poller

JOBS, STEPS = sized((30, 1000), (200, 5000))
SPEED = 200.0
#: Every fault kind but `oversized` (a bad-bodies case), 20 % of requests in all.
KINDS = [k for k in FAULT_KINDS if k != "oversized"]
TIMEOUT = 1.5  # the client's deadline: shorter than the stall, longer than the drip
FAULTS = (
    ",".join(f"{k}={0.2 / len(KINDS):.6f}" for k in KINDS)
    + f",retry-after=0.5,stall-seconds={2 * TIMEOUT},drip-seconds=0.3"
)
MAX_CONCURRENCY = 4
#: A request sent before the client had read the 429 sent just earlier is not a breach:
#: it was already on the wire. Requests arriving this long after that reply ended are.
SLACK = 0.2
#: How long before the sim logs a request its client may have started the attempt.
CONNECT_ALLOWANCE = 0.1


def scenario(seed: int) -> dict[str, Any]:
    """JOBS x STEPS SFT jobs whose phases last about 1.5 s of real time each."""
    spec = big_scenario(JOBS, STEPS, seed=seed, speed=SPEED)
    for phase in ("pending", "queue", "compress", "upload"):
        spec["jobs"][0][phase] = 1.5 * SPEED
    return spec


def early_requests(log: Sequence[RequestRecord]) -> list[tuple[RequestRecord, RequestRecord]]:
    """(429/503, later request) pairs where the later one came before the Retry-After time."""
    ordered = sorted(log, key=lambda r: r.time)
    times = [r.time for r in ordered]
    found = []
    for limited in ordered:
        if limited.retry_at is None:
            continue
        start = bisect.bisect_right(times, limited.time + limited.duration + SLACK)
        stop = bisect.bisect_left(times, limited.retry_at)
        found += [(limited, later) for later in ordered[start:stop]]
    return found


def overlaps(log: Sequence[RequestRecord], deadline: float) -> list[str]:
    """The requests open at the busiest moment, for a failure message."""
    cut = deadline - CONNECT_ALLOWANCE

    def end(r: RequestRecord) -> float:
        return r.time + (min(r.duration, cut) if r.fault == "stall" else r.duration)

    busiest = max(log, key=lambda r: sum(1 for q in log if q.time <= r.time < end(q)))
    return [
        f"{q.fault} at {q.time - busiest.time:+.3f}s for {end(q) - q.time:.3f}s"
        for q in log
        if q.time <= busiest.time < end(q)
    ]


def describe(limited: RequestRecord, later: RequestRecord) -> str:
    """A Retry-After breach in numbers, relative to when the 429/503 was sent."""
    sent = limited.time + limited.duration
    asked = (limited.retry_at or sent) - sent
    return (
        f"{limited.fault} sent at {sent:.3f} asking for {asked:.3f}s; "
        f"{later.method} {later.path} arrived {later.time - sent:.3f}s after it"
    )


def max_in_flight(log: Sequence[RequestRecord], deadline: float) -> int:
    """Requests open at once as the client saw them: none outlives the client's deadline.

    The sim holds a stalled connection for stall-seconds, and finishes a slow drip at
    its own pace, whatever the client does, so its own `max_in_flight` counts requests
    the client already gave up on (a soak run saw a drip end 0.15 s after the client's
    deadline, while the client's next request had started). The client's
    deadline started when it began the attempt (connect, send), a little before the sim
    logged the request: CONNECT_ALLOWANCE bounds that lead.
    """
    edges: list[tuple[float, int]] = []
    for r in log:
        cut = deadline - CONNECT_ALLOWANCE
        length = min(r.duration, cut)
        edges += [(r.time, 1), (r.time + length, -1)]
    current = peak = 0
    for _, step in sorted(edges, key=lambda e: (e[0], e[1])):
        current += step
        peak = max(peak, current)
    return peak


@pytest.mark.timeout(sized(150, 3600))
def test_faults_keep_the_history_exact_and_the_limits(tmp_path: Path) -> None:
    """20 % faulted requests: exact rows, Retry-After obeyed, in-flight capped, <=1.5x requests.

    The fault-free run for the request count comes after, so that nothing else in this
    process competes with the faulty sim's timestamps (a breach is counted from them)."""
    seed = draw_seed("faults")
    faulty_world = World(scenario(seed))
    (tmp_path / "clean").mkdir()
    (tmp_path / "faulty").mkdir()
    with run_in_thread(faulty_world, api_key=API_KEY, faults=f"{FAULTS},seed={seed}") as sim:
        proc = start_daemon(config(tmp_path / "faulty", sim.base_url, faulty_world), "--until-done")
        code, rss_start, rss_end = wait_watching_rss(proc, sized(120, 3500))
        log, sim_peak = sim.stats.snapshot(), sim.stats.max_in_flight
    clean_world = World(scenario(seed))
    with run_in_thread(clean_world, api_key=API_KEY) as clean_sim:
        clean = start_daemon(
            config(tmp_path / "clean", clean_sim.base_url, clean_world), "--until-done"
        )
        codes = [clean.wait(timeout=sized(120, 3500)), code]
        clean_log = clean_sim.stats.snapshot()
    assert codes == [0, 0], (tmp_path / "faulty" / "daemon.log").read_text()[-3000:]
    data = stored(tmp_path / "faulty" / "watcherd.db")
    rows = sum(len(v) for v in data["metrics"].values())
    truth = sum(len(faulty_world.truth(j)) for j in faulty_world.job_ids())
    faulted = sum(1 for r in log if r.fault)
    early = early_requests(log)
    peak = max_in_flight(log, TIMEOUT)
    report(
        "faults",
        jobs=JOBS,
        steps=STEPS,
        requests=len(log),
        fault_free_requests=len(clean_log),
        ratio=round(len(log) / len(clean_log), 2),
        faulted=faulted,
        by_fault=dict(sorted(sim.stats.by_fault.items())),
        rows_expected=truth,
        rows_stored=rows,
        retry_after_breaches=len(early),
        max_in_flight=peak,
        sim_max_in_flight=sim_peak,
        daemon_rss_kib_start=rss_start,
        daemon_rss_kib_end=rss_end,
    )
    assert_exact(faulty_world, data["metrics"])
    assert 0.12 <= faulted / len(log) <= 0.28  # 20 %, within four standard deviations
    assert set(sim.stats.by_fault) == set(KINDS)  # the sim deals kinds in rounds of len(KINDS)
    assert not early, [describe(limited, later) for limited, later in early[:3]]
    assert peak <= MAX_CONCURRENCY, overlaps(log, TIMEOUT)
    assert len(log) <= 1.5 * len(clean_log)


def config(folder: Path, base_url: str, world: World) -> Path:
    """The daemon's config: a deadline shorter than the stall, four requests in flight."""
    return harness_config(
        folder,
        base_url,
        world.job_ids(),
        max_concurrency=MAX_CONCURRENCY,
        timeout=f"{TIMEOUT}s",
    )


@pytest.mark.anyio
@pytest.mark.timeout(30)
async def test_a_stalled_job_holds_no_other_job(tmp_path: Path) -> None:
    """Found by the faults battery: a stalled request held every job's polls until its deadline."""
    fast: list[float] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        if "ft-stall" in request.url.path:
            await anyio.sleep(60)
        if request.url.path.endswith("/metrics"):
            fast.append(time.monotonic())
            return httpx.Response(200, json={"metrics": []})
        if request.url.path.endswith("/fine-tunes"):
            return httpx.Response(200, json={"data": [{"id": "ft-fast", "status": "running"}]})
        return httpx.Response(200, json={"id": "ft-fast", "status": "running"})

    config = Config(
        api=ApiConfig(base_url="http://sim.test", timeout=1.0, max_rate=0),
        poll=PollConfig(interval=0.1, min_interval=0.1, metrics_interval=0.1, max_backoff=0.2),
    )
    async with (
        Store.open(tmp_path / "w.db", writer=True) as store,
        httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http,
    ):
        await store.sync_watched([("ft-fast", None), ("ft-stall", None)], time.time())
        poller = Poller(store, ApiClient.from_config(http, config.api, "k", max_attempts=1), config)
        await poller.load_jobs()
        with anyio.move_on_after(3.0):
            await poller.run()
    gaps = [b - a for a, b in itertools.pairwise(fast)]
    report("stalled job", fast_polls=len(fast), longest_gap_s=round(max(gaps), 2))
    assert max(gaps) < 0.6


def _record(
    at: float, duration: float, *, fault: str | None = None, retry_at: float | None = None
) -> RequestRecord:
    return RequestRecord(at, "GET", "/v1/fine-tunes", "", 200, fault, retry_at, duration, True)


def test_the_checks_themselves_catch_breaches() -> None:
    """The Retry-After and in-flight checks flag a request sent too early and a fifth in flight."""
    limited = _record(10.0, 0.01, fault="429", retry_at=11.0)
    on_the_wire, early, fine = _record(10.05, 0.01), _record(10.5, 0.01), _record(11.0, 0.01)
    assert early_requests([limited, on_the_wire, early, fine]) == [(limited, early)]
    stalled = _record(0.0, 3.0, fault="stall")
    overlapping = [_record(0.1 * i, 1.0) for i in range(1, 5)]
    assert max_in_flight([stalled, *overlapping[:3]], TIMEOUT) == 4
    assert max_in_flight([stalled, *overlapping], TIMEOUT) == 5
    assert max_in_flight([stalled, _record(TIMEOUT, 1.0)], TIMEOUT) == 1
