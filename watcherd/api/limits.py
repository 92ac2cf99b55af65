"""Staying within what the service allows: the host gate, the rate cap, the in-flight cap.

- `HostGate`: one per host. A 429 or 503 with `Retry-After` pauses every request to
  that host until the time the service named; every extension is saved (through a
  callback the daemon wires to the store) before more requests go out, so a restart
  keeps it. With daemons sharing a database, each request start first reads the
  pause the others stored (`refresh`, see `watcherd.api.sharedpause`).
- `RateLimiter`: spaces requests so that all callers together stay at `rate` per
  second (GCRA, a token bucket without a refill task).
- `Slots`: at most so many requests (or polls) under way at once, resizable.
- How long a server asks us to wait (Retry-After) is read by `watcherd.retry`.

Times given to or read from the gate are wall-clock epoch seconds. Clocks and sleeps
are injectable so tests never wait on real time.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Awaitable, Callable

import anyio
import structlog

from watcherd.api.sharedpause import SharedPause
from watcherd.errors import RateLimitedError, WatcherdError

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
#: Saves a host's pause (epoch seconds) durably.
Save = Callable[[float], Awaitable[None]]

log = structlog.get_logger("watcherd.api")


class HostGate:
    """Holds back every request to one host until `paused_until` (epoch seconds).

    `extend` (a response asked for a pause) saves the new time through `save` before
    it returns, so the caller that read the response sends nothing more until the
    pause is durable; other callers are held from the moment the pause is known. Saves
    are made one at a time, each of the latest time, so an earlier extension never
    overwrites a later one. A failed save is logged and tried again by the next `flush`.
    """

    __slots__ = (
        "_clock",
        "_drained",
        "_lock",
        "_open",
        "_save",
        "_saved",
        "_shut",
        "_sleep",
        "_until",
        "shared",
    )

    def __init__(
        self,
        *,
        clock: Clock = time.time,
        sleep: Sleep = anyio.sleep,
        save: Save | None = None,
        shared: SharedPause | None = None,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._save = save
        self.shared = shared
        self._until = 0.0
        self._saved = 0.0
        self._lock = anyio.Lock()
        self._open = 0  # requests sent whose answer is not read (and its pause saved) yet
        self._shut = False
        self._drained: anyio.Event | None = None

    def __repr__(self) -> str:
        return f"HostGate(paused_until={self._until!r})"

    @property
    def paused_until(self) -> float:
        """The epoch time until which requests wait; 0.0 (or a past time) when open."""
        return self._until

    async def extend(self, resume_at: float) -> bool:
        """Pause every request until `resume_at` and save it; never shortens. True if extended."""
        if not math.isfinite(resume_at) or resume_at <= max(self._until, self._clock()):
            return False
        self._until = resume_at
        await self.flush()
        return True

    async def refresh(self, cap: float) -> float | None:
        """With `shared`: follow the pause stored by any daemon (cut to `cap` s from now),
        read by a read begun after this call; returns when that read began (wall clock;
        None without `shared`, or while the database does not answer)."""
        if self.shared is None:
            return None
        stored, read_at = await self.shared.current()
        if stored is None or not math.isfinite(stored):
            return read_at
        until = min(stored, self._clock() + cap)
        if until > max(self._until, self._clock()):
            self._until = self._saved = until  # stored already: nothing to save
            log.info("api.pause_shared", until=until, seconds=round(until - self._clock(), 3))
        return read_at

    async def open_for(self, deadline: float, cap: float) -> float | None:
        """`wait`, then, with `shared`, read the stored pause again after every wait, until
        a read begun after the last wait finds the gate open: a request that waited out
        one pause never goes out during another a daemon stored meanwhile. Returns when
        that last read began (None without `shared`)."""
        while True:
            read_at = await self.refresh(cap)
            if self._until <= self._clock() and not self._shut:
                return read_at
            await self.wait(deadline)
            if self.shared is None:
                return None

    async def flush(self) -> None:
        """Save the pause if it changed since the last save (at stop, after a failed save)."""
        async with self._lock:
            if self._save is not None and self._until != self._saved:
                await self._write(self._until)

    async def adopt(self, stored: float | None, *, cap: float) -> float:
        """Take a stored pause as the truth (start-up, reload), cut to `cap` s from now.

        A stored pause lower than ours (`watcherd resume` cleared it) lowers ours; an
        extension not saved yet is kept. If the cap cut it, the cut time is saved.
        Returns the pause now in force (0.0 or a past time: none).
        """
        async with self._lock:
            base = stored or 0.0
            if self._until > self._saved:  # an extension still on its way to the store
                base = max(base, self._until)
            self._until = min(base, self._clock() + cap)
            self._saved = stored or 0.0
            if self._save is not None and self._until < self._saved:
                await self._write(self._until)
            return self._until

    async def _write(self, until: float) -> None:
        """Save `until`; the caller holds the lock."""
        assert self._save is not None
        try:
            await self._save(until)
        except WatcherdError as exc:
            log.warning("api.pause_not_saved", until=until, error=str(exc))
            return
        self._saved = until
        log.info("api.pause_saved", until=until, seconds=round(until - self._clock(), 3))

    def is_paused(self) -> bool:
        """True while the pause lasts."""
        return self._until > self._clock()

    def clear(self) -> bool:
        """True when a request may go out with no wait and no read: no pause in force,
        not shut, no pause shared by other daemons to read first. `wait` and `open_for`
        would return at once; the caller skips them (two coroutines per request)."""
        return self.shared is None and not self._shut and self._until <= self._clock()

    def exchange(self) -> HostGate:
        """`with gate.exchange():` counts one request as open until its answer is read
        and any pause it asks saved (a plain context manager: nothing made per request)."""
        return self

    def __enter__(self) -> None:
        self._open += 1

    def __exit__(self, *exc: object) -> None:
        self._open -= 1
        if not self._open and self._drained is not None:
            self._drained.set()

    async def drain(self) -> None:
        """Shut the gate for good (a graceful stop), then wait for every open request.

        No answer is left unread, so no pause a server asks for is lost by the stop.
        """
        self._shut = True
        while self._open:
            self._drained = anyio.Event()
            await self._drained.wait()

    async def wait(self, deadline: float) -> None:
        """Return once the gate is open; raise RateLimitedError if it opens after `deadline`.

        Once the gate is shut (`drain`), never return: the caller waits for its cancellation.
        """
        if self._shut:
            await anyio.sleep_forever()
        while True:
            now = self._clock()
            until = self._until
            if until <= now:
                return
            if until > deadline:
                raise RateLimitedError(
                    f"requests to this host are paused for another {until - now:.1f}s",
                    resume_at=until,
                    status=None,
                )
            await self._sleep(until - now)


class RateLimiter:
    """At most `rate` request starts per second across all callers, `burst` at once.

    Each caller reserves the next free slot and sleeps until it, so waiting callers
    are served in order without a background task. `rate <= 0` disables the cap.
    """

    __slots__ = ("_clock", "_interval", "_next", "_sleep", "_tolerance")

    def __init__(
        self,
        rate: float,
        *,
        burst: int = 1,
        clock: Clock = time.monotonic,
        sleep: Sleep = anyio.sleep,
    ) -> None:
        if burst < 1:
            raise ValueError("burst must be at least 1")
        self._interval = 1.0 / rate if rate > 0 and math.isfinite(rate) else 0.0
        self._tolerance = (burst - 1) * self._interval
        self._clock = clock
        self._sleep = sleep
        self._next = -math.inf

    def set_rate(self, rate: float) -> None:
        """A new cap from the next reservation on (the burst stays as given)."""
        burst = round(self._tolerance / self._interval) + 1 if self._interval else 1
        self._interval = 1.0 / rate if rate > 0 and math.isfinite(rate) else 0.0
        self._tolerance = (burst - 1) * self._interval

    async def acquire(self) -> None:
        """Wait for this caller's slot."""
        if self._interval == 0.0:
            return
        now = self._clock()
        theoretical = max(self._next, now)
        start = theoretical - self._tolerance
        self._next = theoretical + self._interval
        if start > now:
            await self._sleep(start - now)


class Slots:
    """At most `total_tokens` holders at once (`async with slots:`); waiters in order.

    What `anyio.CapacityLimiter` does for the API client and the poller, without its
    trip through the event loop on every acquire (anyio yields once even when a slot is
    free: a task switch and a cancel scope per request). A free slot is taken at once;
    a released slot goes straight to the first waiter. Raising `total_tokens` wakes as
    many waiters as it frees; lowering it takes effect as holders leave.
    """

    __slots__ = ("_held", "_total", "_waiters")

    def __init__(self, total_tokens: int) -> None:
        self._total = total_tokens
        self._held = 0
        self._waiters: deque[anyio.Event] = deque()

    @property
    def total_tokens(self) -> int:
        """How many may hold a slot at once."""
        return self._total

    @total_tokens.setter
    def total_tokens(self, value: int) -> None:
        self._total = value
        while self._waiters and self._held < self._total:
            self._held += 1
            self._waiters.popleft().set()

    @property
    def borrowed_tokens(self) -> int:
        """How many hold a slot now."""
        return self._held

    async def __aenter__(self) -> None:
        if self._held < self._total and not self._waiters:
            self._held += 1
            return
        event = anyio.Event()
        self._waiters.append(event)
        try:
            await event.wait()
        except BaseException:
            if event.is_set():  # a slot was handed over as the wait was cancelled
                self._release()
            else:
                self._waiters.remove(event)
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._release()

    def _release(self) -> None:
        if self._waiters and self._held <= self._total:
            self._waiters.popleft().set()  # the slot passes on: `_held` stays
        else:
            self._held -= 1
