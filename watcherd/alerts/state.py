"""What the rules remember about a job between polls, kept in the job's database row.

The state is written in the same transaction as the page of rows that changed it,
so after a crash, a kill or a re-poll the rules resume from exactly what is stored:
a row already evaluated (its step at or below `seen[kind]`) is never counted twice.
Times are epoch seconds: `*_at` on watcherd's clock (when it looked), `run_start`
and `epoch` on the service's (row timestamps, `started_at`).

The state is a msgspec struct, read from and written to its JSON text in C: between
polls the poller keeps only that text (about 1 KB a job, where the objects took about
3 KB), and each poll reads it once, evaluates, and writes the new text.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, Final

import msgspec

#: Recent seconds-per-step samples kept for the median.
STEP_SAMPLES: Final = 32


class AlertState(msgspec.Struct, frozen=True, gc=False):
    """One job's rule memory (see the module docstring); empty for a new job.

    Not tracked by the garbage collector: it holds only strings, numbers and tuples
    of them, so it can be in no reference cycle.
    """

    seen: Mapping[str, int] = {}  # kind -> last evaluated step
    latest: Mapping[str, tuple[int, float]] = {}  # key -> (step, value)
    bad_since: Mapping[str, int] = {}  # key -> first step of its NaN run
    best: Mapping[str, float] = {}  # key -> best finite value
    recent: Mapping[str, tuple[float, ...]] = {}  # key -> last finite values
    rises: Mapping[str, int] = {}  # eval key -> rises in a row
    step_secs: tuple[float, ...] = ()  # recent seconds per step, from row timestamps
    last_train: tuple[int, int] | None = None  # (step, timestamp ns) of the newest train row
    max_step: int | None = None
    progress_at: float | None = None  # when a fetch first showed `max_step`
    metrics_at: float | None = None  # when metrics were last fetched
    queued_since: float | None = None  # when watcherd first saw it pending or queued
    run_start: float | None = None  # service time training began
    first_epoch: float | None = None  # seconds the first epoch took
    expected: float | None = None  # training seconds expected (frozen: see `eta.expected`)
    epoch: tuple[float, float] | None = None  # (train/epoch, service time) of the newest row
    open: Mapping[str, int] = {}  # rule -> open episode
    episodes: Mapping[str, int] = {}  # rule -> episodes so far
    cancel: str | None = None  # the rule that decided to cancel this job (once per job)

    def median_step(self) -> float | None:
        """The median seconds per step of the recent samples."""
        if not self.step_secs:
            return None
        ordered = sorted(self.step_secs)
        mid = len(ordered) // 2
        return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2

    def to_json(self) -> str:
        """Compact JSON, every field in order (non-finite values written literally).

        msgspec writes it in C; it would write a NaN or an infinity as `null`, so a
        state holding one (a loss gone NaN) is written by `json.dumps` instead, as
        before. Both read back to the same state.
        """
        if _finite(self):
            return _ENCODE(self).decode()
        plain = {name: _plain(getattr(self, name)) for name in _NAMES}
        return json.dumps(plain, separators=(",", ":"), allow_nan=True)

    @classmethod
    def from_json(cls, text: str | bytes | None) -> AlertState:
        """The state stored as `text` (an empty state for None or an unreadable value)."""
        if not text:
            return EMPTY
        try:
            return _DECODE(text)
        except msgspec.MsgspecError:  # NaN or Infinity (strict JSON has none), odd types
            pass
        try:
            raw = json.loads(text)
            known = [name for name in _NAMES if name in raw]
            return cls(**{name: _restore(name, raw[name]) for name in known})
        except (ValueError, TypeError, KeyError, AttributeError):
            return EMPTY


EMPTY: Final = AlertState()
_NAMES: Final = AlertState.__struct_fields__
_PAIRS: Final = frozenset({"last_train", "epoch"})
_ENCODE: Final = msgspec.json.Encoder().encode
_DECODE: Final = msgspec.json.Decoder(AlertState).decode


def _finite(state: AlertState) -> bool:
    """True if every float in `state` is finite: their sum is (an overflow of finite
    values reads as not finite, which only sends the state the exact way)."""
    total = sum(state.step_secs) + sum(state.best.values())
    total += sum(value for _, value in state.latest.values())
    for window in state.recent.values():
        total += sum(window)
    for value in (state.progress_at, state.metrics_at, state.queued_since, state.run_start,
                  state.first_epoch, state.expected):  # fmt: skip
        if value is not None:
            total += value
    if state.epoch is not None:
        total += state.epoch[0] + state.epoch[1]
    return math.isfinite(total)


def _plain(value: Any) -> Any:
    """A field's value as `json.dumps` takes it (a mapping as a dict)."""
    return dict(value) if isinstance(value, Mapping) and not isinstance(value, dict) else value


def _restore(name: str, value: Any) -> Any:
    """JSON lists back into the tuples the struct holds."""
    if value is None:
        return None
    if name == "latest":
        return {k: (int(v[0]), float(v[1])) for k, v in value.items()}
    if name == "recent":
        return {k: tuple(float(x) for x in v) for k, v in value.items()}
    if name == "step_secs":
        return tuple(float(x) for x in value)
    if name in _PAIRS:
        return (value[0], value[1])
    return value
