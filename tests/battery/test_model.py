"""The model battery: a hypothesis state machine drives the sim, the poller and crashes."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections import Counter
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from tests.battery.sizes import draw_seed, report, sized
from tests.daemonharness import row_key
from watcherd.api.client import ApiClient
from watcherd.config import ApiConfig, CommandHook, Config, HookConfig, PollConfig
from watcherd.model import is_terminal
from watcherd.sim import CancelRefusedError, ManualClock, SimServer, World, serve
from watcherd.store import Store
from watcherd.watch.dispatcher import Dispatcher
from watcherd.watch.poller import Poller

KEY = "sk-model-SECRET"
NOW = 1_779_196_000.0
PHASES = {"pending": 5, "queue": 20, "compress": 10, "upload": 10}
SCENARIO: dict[str, Any] = {
    "seed": 5,
    "jobs": [
        {"steps": 30, "seconds_per_step": 4, "eval_steps": 5, "created": "-10s"} | PHASES,
        {"steps": 50, "seconds_per_step": 3, "eval_steps": 10, "created": "-1m"} | PHASES,
        {"steps": 40, "seconds_per_step": 5, "final": "error", "error_at_step": 25} | PHASES,
    ],
}
#: Faults that fail a request at once (no stalls: the clock here is not the wall clock).
FAULTS = ("500", "503", "reset", "truncated", "html", "html502")
HOOK = HookConfig(name="sink", action=CommandHook(argv=("true",)), timeout=10.0)
STATS: Counter[str] = Counter()


class PollerModel(RuleBasedStateMachine):
    """The poller, store and dispatcher against the sim on a manual clock."""

    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="watcherd-model-"))
        self.clock = ManualClock(NOW)
        self.world = World(SCENARIO, clock=self.clock)
        self.jobs = self.world.job_ids()
        self.stack = ExitStack()
        self.portal: BlockingPortal = self.stack.enter_context(
            start_blocking_portal(backend="asyncio")
        )
        self.sim: SimServer = self.enter(serve(self.world, api_key=KEY))
        self.http = self.enter(httpx.AsyncClient())
        self.config = Config(
            api=ApiConfig(base_url=self.sim.base_url, timeout=5.0, max_rate=0),
            poll=PollConfig(interval=1.0, min_interval=0.1, max_backoff=1.0),
            hooks=(HOOK,),
        )
        self.faulty = False
        self.store_cm: AbstractContextManager[Store] | None = None
        self.start()
        self.portal.call(self.store.sync_watched, [(j, None) for j in self.jobs], time.time())
        self.portal.call(self.poller.load_jobs)

    def enter(self, cm: Any) -> Any:
        """Enter an async context manager on the portal's loop until teardown."""
        return self.stack.enter_context(self.portal.wrap_async_context_manager(cm))

    def start(self) -> None:
        """Open the store and build a fresh poller and dispatcher, as a restarted daemon."""
        self.store_cm = self.portal.wrap_async_context_manager(
            Store.open(self.folder / "w.db", writer=True)
        )
        self.store = self.store_cm.__enter__()
        api = ApiClient.from_config(self.http, self.config.api, KEY, max_attempts=1)
        # The watcher keeps wall-clock time (as the client's Retry-After does); only the
        # simulated service runs on the manual clock.
        self.poller = Poller(self.store, api, self.config)
        self.dispatcher = Dispatcher(self.store, self.http, self.config)
        self.portal.call(self.store.recover_interrupted, time.time())
        self.portal.call(self.poller.load_jobs)

    def teardown(self) -> None:
        if self.store_cm is not None:
            self.store_cm.__exit__(None, None, None)
        self.stack.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    # -- the world -------------------------------------------------------

    @rule(seconds=st.integers(1, 90))
    def advance(self, seconds: int) -> None:
        """Sim time passes."""
        self.clock.advance(seconds)

    @rule(index=st.integers(0, 2))
    def finish(self, index: int) -> None:
        """Jump to the moment a job reaches its final status."""
        final = self.world.job(self.jobs[index]).timeline.final
        if final is not None and final[0] > self.clock():
            self.clock.set(final[0] + 0.5)

    @rule(index=st.integers(0, 2))
    def cancel(self, index: int) -> None:
        """Someone cancels a job (refused when it is already over)."""
        try:
            self.world.cancel(self.jobs[index])
            STATS["cancels"] += 1
        except CancelRefusedError:
            pass

    @rule(kind=st.sampled_from(FAULTS))
    def fault(self, kind: str) -> None:
        """The next poll's requests all fail this way."""
        self.sim.set_faults(f"{kind}=1,retry-after=0")
        self.faulty = True
        STATS["faults"] += 1

    # -- the watcher -----------------------------------------------------

    @rule()
    def poll(self) -> None:
        """Poll every live job once; a poll without faults must catch up with the truth."""
        self.portal.call(self.poller.poll_once)
        STATS["polls"] += 1
        if self.faulty:
            self.sim.set_faults(None)
            self.faulty = False
            return
        STATS["quiet polls"] += 1
        for job_id in self.jobs:
            got = [row_key(r) for r in self.stored(job_id)]
            visible = [row_key(r) for r in self.world.visible_rows(job_id)]
            status = self.world.status_at(job_id)
            assert got == visible, f"{job_id} ({status}): {len(got)} stored, {len(visible)} visible"

    @rule()
    def crash_restart(self) -> None:
        """The daemon dies and starts again: everything in memory is gone."""
        assert self.store_cm is not None
        self.store_cm.__exit__(None, None, None)
        self.store_cm = None
        self.start()
        STATS["restarts"] += 1

    @rule()
    def reload(self) -> None:
        """SIGHUP with the same config: the poller re-reads its jobs."""
        self.poller.reconfigure(self.config)
        self.portal.call(self.poller.load_jobs)

    @rule()
    def deliver(self) -> None:
        """Run the hooks that are due."""
        self.portal.call(self.dispatcher.drain)

    # -- invariants ------------------------------------------------------

    def stored(self, job_id: str) -> list[dict[str, Any]]:
        """The rows the store holds for a job."""
        rows: list[dict[str, Any]] = self.portal.call(self.store.all_metrics, job_id)
        return rows

    @invariant()
    def stored_rows_are_a_subset_of_the_truth(self) -> None:
        """No row that the service never logged, and none twice."""
        for job_id in self.jobs:
            got = [row_key(r) for r in self.stored(job_id)]
            assert len(got) == len(set(got)), f"{job_id}: duplicated rows"
            assert set(got) <= {row_key(r) for r in self.world.truth(job_id)}

    @invariant()
    def a_terminal_status_is_never_left(self) -> None:
        """After a terminal transition a job has no further transition."""
        for job_id in self.jobs:
            seen = [t.to_status for t in self.portal.call(self.store.transitions, job_id)]
            ends = [i for i, status in enumerate(seen) if is_terminal(status)]
            assert not ends or ends[0] == len(seen) - 1, f"{job_id}: {seen}"

    @invariant()
    def one_delivery_per_job_and_hook(self) -> None:
        """Exactly one delivery for each terminal job (the hook fires on every terminal status)."""
        deliveries = self.portal.call(self.store.deliveries)
        per = Counter((d.job_id, d.hook) for d in deliveries)
        assert all(n == 1 for n in per.values()), per
        states = self.portal.call(self.store.job_states)
        terminal = {j for j, s in states.items() if s.status and is_terminal(s.status)}
        assert {job for job, _ in per} == terminal


@pytest.mark.timeout(sized(120, 3600))
def test_model_poller_store_and_hooks_against_the_sim() -> None:
    """Random advance/finish/cancel/fault/crash/poll/reload: rows, statuses, deliveries hold."""
    seed = draw_seed("model")
    run_state_machine_as_test(
        hypothesis_seed(seed)(PollerModel),
        settings=settings(
            max_examples=sized(40, 300),
            stateful_step_count=sized(20, 40),
            deadline=None,
            suppress_health_check=list(HealthCheck),
            print_blob=True,
        ),
    )
    report("model", **STATS)


@pytest.mark.timeout(30)
def test_a_job_cancelled_mid_run_shows_its_rows_at_the_next_poll() -> None:
    """Found by the model: a running job cancelled before its first poll had its rows skipped."""
    model = PollerModel()
    try:
        model.cancel(index=1)
        model.poll()
    finally:
        model.teardown()
