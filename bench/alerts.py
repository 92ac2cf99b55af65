"""Early warning on a simulated day: detection delay, GPU steps saved, false alerts, requests.

The day mixes healthy jobs (noisy evals, plateaus, DPO, several epochs) with jobs that
go wrong: a sudden NaN, a slow divergence, a stall mid-run, a long queue. watcherd
runs its real Poller, Store and alert rules with the sim clock injected (as in
`economy`), default timings, and cancel armed for `nonfinite` and `diverging`.

- Delay: from the earliest moment the rule could say so (the same rules fed every
  row as it is logged, every 15 sim seconds, so a delay can read up to 15 s below
  zero) to the alert watcherd recorded.
- GPU steps: the steps the bad jobs ran with cancel armed, against their planned
  run without it (waiting for the end).
- False alerts: alerts on the jobs that are healthy (a healthy job queued past an
  hour is rightly `queued_long`, and not counted).
- Requests: the same day with the default rules (alerting, no cancel) against a naive
  loop (retrieve and metrics for every live job every 60 s, over the jobs' natural
  lives), the baseline of `economy`; and against the same day with every rule off,
  to show that the rules add no requests.
"""

from __future__ import annotations

import dataclasses
import math
import random
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any, Final

import anyio

from bench.common import bench_api, bench_config, median, run_worker, watcherd_http
from bench.simclient import SimProcess
from bench.table import Row
from watcherd.alerts.episodes import Observation, evaluate
from watcherd.alerts.state import AlertState
from watcherd.config.alerting import RULES, AlertsConfig, DivergingRule, NonfiniteRule
from watcherd.model import MetricFilter, is_terminal
from watcherd.sim import ManualClock, World
from watcherd.sim.objects import job_object
from watcherd.store import Store
from watcherd.watch.poller import Poller

START: Final = 1_779_196_000.0  # bench.simproc's default start
ARMED: Final = AlertsConfig(
    nonfinite=NonfiniteRule(action="cancel"), diverging=DivergingRule(action="cancel")
)
#: Every rule off: the same day, to count the requests the rules add.
QUIET: Final = AlertsConfig(
    **{name: dataclasses.replace(ARMED.rule(name), enabled=False) for name in RULES}  # type: ignore[arg-type]
)
#: The ideal observer looks this often (sim seconds): the delays' resolution.
IDEAL_STEP: Final = 15.0
KINDS: Final = ("healthy", "nan", "drift", "stall", "queue")
WEIGHTS: Final = (0.5, 0.15, 0.15, 0.1, 0.1)


def _job(rng: random.Random, day: float) -> dict[str, Any]:
    """One job of a random kind; `suffix` names the kind."""
    kind = rng.choices(KINDS, WEIGHTS)[0]
    steps = rng.choice([150, 300, 600, 1200])
    job: dict[str, Any] = {
        "suffix": kind,
        "created": rng.uniform(0, day * 0.5),
        "queue": 60 * math.exp(rng.uniform(0, math.log(180))),  # 1 min .. 3 h, as `economy`
        "steps": steps,
        "seconds_per_step": rng.choice([5, 10, 20]),
        "eval_steps": rng.choice([5, 10, 50]),
        "method": rng.choice(["sft", "sft", "dpo"]),
        "n_epochs": rng.choice([1, 2, 3]),
        "estimate": rng.random() < 0.5,
    }
    at = int(steps * rng.uniform(0.3, 0.6))
    if kind == "healthy" and rng.random() < 0.3:
        job["plateau_at"] = steps // 4
    elif kind == "nan":
        job |= {"diverge_at": at}
    elif kind == "drift":
        job |= {"drift_at": at, "drift": rng.choice([0.01, 0.03, 0.05])}
    elif kind == "stall":
        job |= {"stall_at": at, "stall_for": rng.uniform(3600, 7200)}
    elif kind == "queue":
        job["queue"] = rng.uniform(5400, 3 * 3600)
    return job


def scenario(jobs: int, day: float) -> dict[str, Any]:
    """`jobs` jobs created over the first half of `day` sim seconds."""
    rng = random.Random(1616)
    return {"seed": 16, "jobs": [_job(rng, day) for _ in range(jobs)]}


async def _watcherd(sim: SimProcess, db: Path, alerts: AlertsConfig) -> dict[str, Any]:
    """The real poller over the day, clock jumping from one due time to the next."""
    lives = {j: c for j, (c, _, _) in sim.head["lives"].items()}
    clock = [sim.t0]
    config = dataclasses.replace(bench_config(db), alerts=alerts, allow_cancel=True)
    async with Store.open(db, writer=True) as store, watcherd_http() as http:

        def now() -> float:
            return clock[0]

        poller = Poller(store, bench_api(http, sim.base_url), config, wall=now, monotonic=now)
        watched: set[str] = set()
        while True:
            new = [j for j, c in lives.items() if c <= now() and j not in watched]
            if new:
                watched.update(new)
                await store.sync_watched([(j, None) for j in sorted(watched)], now())
                await poller.load_jobs()
            sim.set_time(now())
            await poller.poll_due()
            pending = [c for j, c in lives.items() if j not in watched]
            if not pending and poller.settled():
                break
            due = min([j.next_at for j in poller.live_jobs()] + pending, default=now())
            clock[0] = max(due, now() + 0.5)
    return {"requests": len(sim.log())}


def ideal_openings(world: World, clock: ManualClock, job_id: str) -> dict[str, float]:
    """When each rule would open if every row were seen the moment it is logged."""
    state, found = AlertState(), dict[str, float]()
    cursor: int | None = None
    while True:
        now = clock()
        job = job_object(world.job(job_id), now, truncated=True)
        rows = []
        if job["status"] not in ("pending", "queued"):
            rows = world.metrics(job_id, MetricFilter(global_step_from=cursor), now)
            cursor = max([cursor or 0, *(int(r["train/global_step"]) for r in rows)])
        result = evaluate(ARMED, state, Observation(now, job["status"], job, rows, True))
        state = result.state
        for change in result.changes:
            if change.opened:
                found.setdefault(change.rule, change.at)
        if is_terminal(job["status"]):
            return found
        clock.advance(IDEAL_STEP)


def _ideal(scenario_: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Ideal openings of every job of the scenario, in a world of its own."""
    clock = ManualClock(START)
    world = World(scenario_, clock=clock)
    out = {}
    for job_id in world.job_ids():
        clock.set(world.job(job_id).timeline.created)
        out[job_id] = ideal_openings(world, clock, job_id)
    return out


def _read(db: Path) -> dict[str, Any]:
    """Alerts, cancels, last steps and lives as the daemon stored them."""
    with sqlite3.connect(db) as conn:
        alerts = conn.execute("SELECT job_id, rule, opened_at FROM alerts").fetchall()
        cancels = dict(conn.execute("SELECT job_id, cancel_state FROM cancels").fetchall())
        steps = dict(conn.execute("SELECT job_id, COALESCE(max_step, 0) FROM jobs").fetchall())
        lives = conn.execute(
            "SELECT job_id, MIN(observed_at), MAX(observed_at) FROM transitions GROUP BY job_id"
        ).fetchall()
    return {"alerts": alerts, "cancels": cancels, "steps": steps, "lives": lives}


def worker(params: dict[str, Any]) -> dict[str, Any]:
    """The day with watcherd (alerts armed, then every rule off), an ideal observer and a
    naive loop."""
    plan = scenario(params["jobs"], params["day"])
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        with SimProcess(plan, folder) as sim:
            got = anyio.run(_watcherd, sim, folder / "day.db", ARMED, backend="asyncio")
            lives, ids = sim.head["lives"], sim.job_ids
        stored = _read(folder / "day.db")
        requests = {}
        for name, rules in (("alerts", AlertsConfig()), ("off", QUIET)):
            with SimProcess(plan, folder) as sim:
                db = folder / f"{name}.db"
                requests[name] = anyio.run(_watcherd, sim, db, rules, backend="asyncio")["requests"]
    jobs = list(zip(ids, plan["jobs"], strict=True))
    return (
        got
        | stored
        | {
            "kinds": {j: str(spec["suffix"]) for j, spec in jobs},
            "planned": {j: int(spec["steps"]) for j, spec in jobs},
            "queues": {
                j: float(spec["queue"]) + float(spec.get("pending", 5.0)) for j, spec in jobs
            },
            "ideal": _ideal(plan),
            "naive": _naive(lives),
            "requests_alerts_on": requests["alerts"],
            "requests_rules_off": requests["off"],
            "wall": time.perf_counter() - start,
        }
    )


def _naive(lives: dict[str, list[Any]]) -> int:
    """Requests of a loop that retrieves and fetches metrics for each live job every 60 s,
    over the jobs' natural lives (it cancels nothing)."""
    return sum(2 * math.ceil((end - begin) / 60.0) for begin, end, _ in lives.values() if end)


def figure(jobs: int, day: float) -> list[Row]:
    """Detection delay, GPU steps with and without cancel, false alerts, request ratio."""
    got = run_worker("alerts", {"jobs": jobs, "day": day})
    kinds, ideal = got["kinds"], got["ideal"]
    delays = [
        at - ideal[job][rule]
        for job, rule, at in got["alerts"]
        if kinds[job] != "healthy" and rule in ideal[job]
    ]
    # A healthy job queued past an hour is rightly `queued_long`: not a false alert.
    false = [
        a
        for a in got["alerts"]
        if kinds[a[0]] == "healthy" and not (a[1] == "queued_long" and got["queues"][a[0]] >= 3600)
    ]
    cancelled = [j for j, state in got["cancels"].items() if state == "requested"]
    ran = sum(got["steps"][j] for j in cancelled)
    planned = sum(got["planned"][j] for j in cancelled)
    naive, on, off = got["naive"], got["requests_alerts_on"], got["requests_rules_off"]
    delay = median(delays) if delays else math.nan
    detail = {
        "jobs": {k: sum(1 for v in kinds.values() if v == k) for k in KINDS},
        "alerts": len(got["alerts"]),
        "cancelled": len(cancelled),
        "steps_saved": planned - ran,
        "delays": sorted(round(d, 1) for d in delays),
        "false_alerts": false,
        "requests_armed": got["requests"],
    }
    return [
        Row("alert delay, first bad step (median)", delay, None, "<= 300 s (1 metrics interval)",
            delay <= 300.0, "sim s", detail),
        Row("GPU steps of bad jobs, cancel armed", ran, planned, "< 1x", ran < planned, "steps"),
        Row("false alerts on healthy jobs", len(false), None, "0", not false),
        Row(f"requests with alerts, {jobs} jobs / {day / 3600:g} h", on, naive, "<= 0.2x",
            on <= 0.2 * naive, "req"),
        Row("requests, alerts on vs rules off", on, off, "<= 1.01x", on <= 1.01 * off, "req"),
    ]  # fmt: skip
