"""The dispatcher: runs due hook deliveries from the outbox, records every attempt.

A delivery is started (attempt counted, state `running`) before its payload is even
built, and finished with its outcome after. An attempt that raises (an unreadable
stored job, a payload that cannot be encoded) is a failed attempt like any other:
logged, recorded, retried, dead after `max_attempts`. A crash between start and finish
leaves it `running`; the next start runs it again (`Store.recover_interrupted`), with
the same delivery id, unless that attempt was its last: attempts cut short by a crash
or a stop count, so a delivery that crashes the daemon cannot run forever.
On a graceful stop, running hooks get a grace period, are killed and recorded as
failed, so they are retried and never duplicated.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import structlog

from watcherd.config import Config, HookConfig
from watcherd.errors import LeaseLostError, StoreError
from watcherd.hooks import Outcome, build_payload, next_attempt_delay, run_hook
from watcherd.hooks.payload import build_budget_payload
from watcherd.model import INTERRUPTED, Delivery, DeliveryState
from watcherd.spend import BUDGET_EXCEEDED
from watcherd.store.interface import StoreApi
from watcherd.watch.budget import spend_now

log = structlog.get_logger("watcherd.watch.dispatcher")

#: Seconds between tries while a shared database does not answer.
OUTAGE_RETRY = 2.0


class Dispatcher:
    """Delivers due hooks with a concurrency limit, retrying with backoff."""

    def __init__(
        self,
        store: StoreApi,
        http: httpx.AsyncClient,
        config: Config,
        *,
        concurrency: int = 4,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.http = http
        self.config = config
        self.wall = wall
        self._limiter = anyio.CapacityLimiter(concurrency)
        self._running: set[str] = set()
        self._wake = anyio.Event()
        self._idle = anyio.Event()
        self._idle.set()
        self.accepting = True  # False once a graceful stop began: start nothing new

    def reconfigure(self, config: Config) -> None:
        """Take a reloaded config: its hooks and limits apply from the next delivery."""
        self.config = config
        self.wake()

    def wake(self) -> None:
        """New deliveries were written: look now."""
        self._wake.set()

    async def wait_idle(self) -> None:
        """A graceful stop: start no more deliveries; return once no hook is running.

        Deliveries due meanwhile (or queued behind the concurrency limit) stay pending
        for the next start, so the grace period only has to cover the hooks running now.
        """
        self.accepting = False
        while self._running:
            await self._idle.wait()

    async def run(self) -> None:
        """Deliver forever; on a shared database, an outage is retried, not fatal."""
        async with anyio.create_task_group() as tg:
            while True:
                try:
                    await self.start_due(tg)
                    await self._sleep()
                except StoreError as exc:
                    if self.config.store.url is None:
                        raise
                    log.warning("store.unreachable", error=str(exc), retry_in=OUTAGE_RETRY)
                    await anyio.sleep(OUTAGE_RETRY)

    async def drain(self) -> None:
        """Deliver everything due now and wait for it (for `run --once`)."""
        async with anyio.create_task_group() as tg:
            await self.start_due(tg)

    async def start_due(self, tg: anyio.abc.TaskGroup) -> int:
        """Start every due delivery that is not already running; return how many."""
        if not self.accepting:
            return 0
        due = await self.store.due_deliveries(self.wall(), limit=100)
        started = 0
        for delivery in due:
            if delivery.id not in self._running:
                self._running.add(delivery.id)
                self._idle = anyio.Event()
                tg.start_soon(self._deliver, delivery)
                started += 1
        return started

    async def _sleep(self) -> None:
        next_due = await self.store.next_delivery_due()
        delay = 1.0 if next_due is None else min(max(next_due - self.wall(), 0.05), 1.0)
        self._wake = anyio.Event()
        with anyio.move_on_after(delay):
            await self._wake.wait()

    def _hook(self, name: str) -> HookConfig | None:
        return next((h for h in self.config.hooks if h.name == name), None)

    async def _deliver(self, delivery: Delivery) -> None:
        try:
            async with self._limiter:
                if self.accepting:  # not if a stop began while it queued for a slot
                    await self._attempt(delivery)
        finally:
            self._running.discard(delivery.id)
            if not self._running:
                self._idle.set()

    async def _attempt(self, delivery: Delivery) -> None:
        hook = self._hook(delivery.hook)
        now = self.wall()
        if hook is None:
            await self._finish(
                delivery.id, DeliveryState.DEAD, "hook is no longer configured", None, None
            )
            return
        if delivery.attempts >= hook.max_attempts:  # the last ones were cut by a crash or stop
            error = f"{delivery.attempts} attempts made; the last: {delivery.last_error}"
            await self._record(delivery.id, hook, delivery.attempts, Outcome.give_up(error))
            return
        try:
            attempt = await self.store.start_attempt(delivery.id, now)
        except LeaseLostError:  # a shared database: another daemon runs it
            log.info("hook.taken_elsewhere", delivery_id=delivery.id)
            return
        try:
            outcome = await self._run(hook, delivery.id, attempt)
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await self._finish(delivery.id, DeliveryState.FAILED, INTERRUPTED, None, now)
            raise
        except Exception as exc:  # no input may crash the daemon: the attempt failed
            log.debug("hook.attempt_raised", delivery_id=delivery.id, exc_info=True)
            outcome = Outcome.retry(f"the attempt raised {type(exc).__name__}: {exc}"[:500])
        await self._record(delivery.id, hook, attempt, outcome)

    async def _payload(self, delivery_id: str) -> dict[str, Any]:
        """The payload of a delivery: a job's, or a budget period's."""
        current, job, summary = await self.store.delivery_context(delivery_id)
        if current.event == BUDGET_EXCEEDED:
            name = current.job_id.split(":")[1] if current.job_id.count(":") >= 2 else ""
            limit = self.config.budget.limits().get(name, 0.0)
            spend = await spend_now(self.store, current.occurred_at)
            used = spend["day" if name == "daily" else "month"]
            return build_budget_payload(current, limit=limit, spent=used)
        extras = await self.store.delivery_extras(current)
        facts = await self.store.payload_facts(current.job_id)
        return build_payload(current, job, summary, extras, facts=facts)

    async def _run(self, hook: HookConfig, delivery_id: str, attempt: int) -> Outcome:
        """Build the payload from the store and run the hook once."""
        payload = await self._payload(delivery_id)
        log.info("hook.started", delivery_id=delivery_id, hook=hook.name, attempt=attempt)
        return await run_hook(
            hook, payload, delivery_id=delivery_id, attempt=attempt, http=self.http
        )

    async def _record(self, delivery_id: str, hook: HookConfig, attempt: int, out: Outcome) -> None:
        if out.state == "delivered":
            log.info("hook.delivered", delivery_id=delivery_id, hook=hook.name, attempt=attempt)
            await self._finish(delivery_id, DeliveryState.DELIVERED, None, out.output_tail, None)
            return
        if out.state == "give_up" or attempt >= hook.max_attempts:
            log.error(
                "hook.dead",
                delivery_id=delivery_id,
                hook=hook.name,
                attempt=attempt,
                error=out.error,
            )
            await self._finish(delivery_id, DeliveryState.DEAD, out.error, out.output_tail, None)
            return
        delay = next_attempt_delay(attempt, retry_after=out.retry_after)
        log.warning(
            "hook.failed",
            delivery_id=delivery_id,
            hook=hook.name,
            attempt=attempt,
            error=out.error,
            retry_in=round(delay, 1),
        )
        await self._finish(
            delivery_id, DeliveryState.FAILED, out.error, out.output_tail, self.wall() + delay
        )

    async def _finish(
        self,
        delivery_id: str,
        outcome: DeliveryState,
        error: str | None,
        output_tail: str | None,
        next_attempt_at: float | None,
    ) -> None:
        with anyio.CancelScope(shield=True):
            try:
                await self.store.finish_attempt(
                    delivery_id,
                    self.wall(),
                    outcome=outcome,
                    error=error,
                    output_tail=output_tail,
                    next_attempt_at=next_attempt_at,
                )
            except LeaseLostError:  # our lease ran out: the new holder's outcome stands
                log.warning("hook.lease_lost", delivery_id=delivery_id, outcome=str(outcome))
