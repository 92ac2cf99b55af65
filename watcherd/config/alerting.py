"""`alerts:` and `allow_cancel:`: the early-warning rules, their defaults and their parser.

Every rule is on by default and only alerts. A rule may carry `action: cancel`, which
the parser refuses (file:line, exit 78) unless the top level also says
`allow_cancel: true`: cancelling a job is the one thing watcherd does to the service,
so it takes two deliberate lines to arm.

The defaults, and why (the README says the same for users):

- `nonfinite` on `train/loss` and `eval/loss`: a NaN or infinite loss never recovers.
- `diverging`: a loss (train loss as a running median of `window` values, so one bad
  batch is not a divergence) above `factor` x its best after `warmup` steps, or an
  eval loss that rose `patience` evals in a row and stands `min_rise` above its best.
  The simulator's healthy curves carry up to about ±9 % noise around their floor,
  so factor 2 and a 20 % eval rise are never reached by noise alone.
- `stalled`: no new step for `factor` x the job's median time per step, never less
  than `floor` (checkpoints and evals pause training for minutes).
- `queued_long`: pending or queued for longer than an hour, which Together's docs
  call the typical upper bound.
- `overrun`: still training `factor` x past the expected length (first epoch x
  `n_epochs`), and at least `grace` beyond it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Literal, cast

from watcherd.config.document import Section, Where, kind_of

RULES: Final = ("nonfinite", "diverging", "stalled", "queued_long", "overrun")
ACTIONS: Final = ("alert", "cancel")
Action = Literal["alert", "cancel"]
LOSS_KEYS: Final = ("train/loss", "eval/loss")
_COMMON: Final = ("enabled", "action")


@dataclass(frozen=True, slots=True)
class NonfiniteRule:
    """A watched key is NaN or ±Infinity."""

    enabled: bool = True
    action: Action = "alert"
    keys: tuple[str, ...] = LOSS_KEYS


@dataclass(frozen=True, slots=True)
class DivergingRule:
    """A loss far above its best, or an eval loss rising evaluation after evaluation."""

    enabled: bool = True
    action: Action = "alert"
    keys: tuple[str, ...] = LOSS_KEYS
    factor: float = 2.0  # x the best (running median for train keys)
    warmup: int = 20  # steps before the factor test applies
    window: int = 5  # train values in the running median
    patience: int = 3  # eval rises in a row
    min_rise: float = 0.2  # ... and this fraction above the best eval loss


@dataclass(frozen=True, slots=True)
class StalledRule:
    """Running, and no new step for too long."""

    enabled: bool = True
    action: Action = "alert"
    stall_after: float | None = None  # seconds; None = adaptive (factor x median step)
    factor: float = 10.0
    floor: float = 600.0


@dataclass(frozen=True, slots=True)
class QueuedLongRule:
    """Pending or queued for longer than `queue_after` since creation."""

    enabled: bool = True
    action: Action = "alert"
    queue_after: float = 3600.0


@dataclass(frozen=True, slots=True)
class OverrunRule:
    """Training well past its expected end."""

    enabled: bool = True
    action: Action = "alert"
    factor: float = 1.5
    grace: float = 600.0


RuleConfig = NonfiniteRule | DivergingRule | StalledRule | QueuedLongRule | OverrunRule


@dataclass(frozen=True, slots=True)
class AlertsConfig:
    """`alerts:`: one entry per rule."""

    nonfinite: NonfiniteRule = NonfiniteRule()
    diverging: DivergingRule = DivergingRule()
    stalled: StalledRule = StalledRule()
    queued_long: QueuedLongRule = QueuedLongRule()
    overrun: OverrunRule = OverrunRule()

    def rule(self, name: str) -> RuleConfig:
        """The configuration of rule `name` (one of RULES)."""
        rule: RuleConfig = getattr(self, name)
        return rule

    def armed(self) -> tuple[str, ...]:
        """The enabled rules that carry `action: cancel`."""
        return tuple(r for r in RULES if self.rule(r).enabled and self.rule(r).action == "cancel")


def parse_alerts(root: Section) -> tuple[AlertsConfig, bool]:
    """`alerts:` and the top-level `allow_cancel:`; cancel without the switch is refused."""
    allow = boolean(root, "allow_cancel", False)
    sec = root.section("alerts", RULES)
    config = AlertsConfig(
        nonfinite=_nonfinite(sec.section("nonfinite", (*_COMMON, "keys"))),
        diverging=_diverging(sec.section("diverging", (*_COMMON, *_DIVERGING))),
        stalled=_stalled(sec.section("stalled", (*_COMMON, "stall_after", "factor", "floor"))),
        queued_long=_queued(sec.section("queued_long", (*_COMMON, "queue_after"))),
        overrun=_overrun(sec.section("overrun", (*_COMMON, "factor", "grace"))),
    )
    if not allow:
        for name in config.armed():
            raise _action_where(sec, name).error(
                "cancel is refused unless the top level also sets allow_cancel: true"
                " (watcherd would cancel jobs on the service; arm it deliberately)"
            )
    return config, allow


_DIVERGING: Final = ("keys", "factor", "warmup", "window", "patience", "min_rise")


def _action_where(sec: Section, name: str) -> Where:
    """The place of `alerts.<name>.action` (the rule's mapping, already validated)."""
    rule = sec.get(name)
    return sec.where(name).child("action", rule.key_lines.get("action", rule.line))


def boolean(sec: Section, key: str, default: bool) -> bool:
    """A `true` / `false` value."""
    value = sec.get(key, default)
    if not isinstance(value, bool):
        raise sec.where(key).error(f"must be true or false, not {kind_of(value)}")
    return value


def _action(sec: Section) -> Action:
    return cast(Action, sec.choice("action", "alert", ACTIONS))


def _keys(sec: Section) -> tuple[str, ...]:
    if "keys" not in sec:
        return LOSS_KEYS
    keys: dict[str, None] = {}
    for at, item in sec.sequence("keys"):
        if not isinstance(item, str) or not item.strip():
            raise at.error(f"must be a metric key like train/loss, not {kind_of(item)}")
        keys[item] = None
    if not keys:
        raise sec.where("keys").error("must name at least one metric key")
    return tuple(keys)


def _factor(sec: Section, key: str, default: float) -> float:
    """A number greater than 1."""
    value = sec.number(key, default)
    if value <= 1 or not math.isfinite(value):
        raise sec.where(key).error(f"must be a number greater than 1, got {value!r}")
    return value


def _nonfinite(sec: Section) -> NonfiniteRule:
    return NonfiniteRule(boolean(sec, "enabled", True), _action(sec), _keys(sec))


def _diverging(sec: Section) -> DivergingRule:
    d = DivergingRule()
    return DivergingRule(
        enabled=boolean(sec, "enabled", True),
        action=_action(sec),
        keys=_keys(sec),
        factor=_factor(sec, "factor", d.factor),
        warmup=sec.integer("warmup", d.warmup, minimum=0),
        window=sec.integer("window", d.window, minimum=1),
        patience=sec.integer("patience", d.patience, minimum=1),
        min_rise=sec.number("min_rise", d.min_rise),
    )


def _stalled(sec: Section) -> StalledRule:
    d = StalledRule()
    after = None if sec.get("stall_after", "auto") == "auto" else sec.duration("stall_after", 1)
    return StalledRule(
        enabled=boolean(sec, "enabled", True),
        action=_action(sec),
        stall_after=after,
        factor=_factor(sec, "factor", d.factor),
        floor=sec.duration("floor", d.floor),
    )


def _queued(sec: Section) -> QueuedLongRule:
    d = QueuedLongRule()
    return QueuedLongRule(
        boolean(sec, "enabled", True), _action(sec), sec.duration("queue_after", d.queue_after)
    )


def _overrun(sec: Section) -> OverrunRule:
    d = OverrunRule()
    return OverrunRule(
        enabled=boolean(sec, "enabled", True),
        action=_action(sec),
        factor=_factor(sec, "factor", d.factor),
        grace=sec.duration("grace", d.grace),
    )
