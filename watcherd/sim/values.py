"""Metric values: smooth training curves plus seeded noise, computable for any step.

Each value depends only on (job seed, step, slot), so any slice of a history can be
generated on its own without replaying the steps before it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from watcherd.model import MetricRow

_MASK = (1 << 64) - 1
DPO_KEYS = ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins")


def noise(seed: int, step: int, slot: int) -> float:
    """A uniform value in [-1, 1) from splitmix64 of (seed, step, slot)."""
    x = (seed * 0x9E3779B97F4A7C15 + step * 0xBF58476D1CE4E5B9 + slot * 0xD1B54A32D192ED03) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    x ^= x >> 31
    return x / float(1 << 63) - 1.0


def _r(value: float) -> float:
    """Round to 6 significant digits, as a logger would print them."""
    return float(f"{value:.6g}")


@dataclass(frozen=True, slots=True)
class Curves:
    """The shape of one job's metrics (hashable, so row chunks can be cached on it)."""

    seed: int
    steps: int
    steps_per_epoch: float
    dpo: bool
    learning_rate: float
    cosine: bool
    diverge_at: int | None
    drift_at: int | None = None
    drift: float = 0.0
    plateau_at: int | None = None

    def epoch(self, step: int) -> float:
        """train/epoch at `step`."""
        return _r(step / self.steps_per_epoch)

    def lr(self, step: int) -> float:
        """The scheduled learning rate after `step` (5 % linear warm-up)."""
        warm = max(1, self.steps // 20)
        if step <= warm:
            return _r(self.learning_rate * step / warm)
        p = (step - warm) / max(1, self.steps - warm)
        factor = 0.5 * (1 + math.cos(math.pi * p)) if self.cosine else 1 - p
        return _r(self.learning_rate * max(factor, 0.0))

    def loss(self, step: int, slot: int, lift: float = 0.0) -> float:
        """A decaying loss; NaN from `diverge_at` on, flat after `plateau_at`, growing after
        `drift_at` (by `drift` a step)."""
        if self.diverge_at is not None and step >= self.diverge_at:
            return math.nan
        curve_step = step if self.plateau_at is None else min(step, self.plateau_at)
        p = curve_step / self.steps
        start = (0.69 if self.dpo else 2.2) + 0.3 * abs(noise(self.seed, 0, slot))
        floor = start * (0.25 + 0.1 * abs(noise(self.seed, 1, slot)))
        value = floor + (start - floor) * math.exp(-4 * p) + lift
        if self.drift_at is not None and step > self.drift_at:
            value *= math.exp(self.drift * (step - self.drift_at))
        return _r(value + 0.02 * start * noise(self.seed, step, slot))

    def train(self, step: int) -> MetricRow:
        """The train metrics at `step` (without timestamp, step and epoch)."""
        p = step / self.steps
        row: MetricRow = {
            "train/loss": self.loss(step, 1),
            "train/grad_norm": _r(
                0.4 + 1.6 * math.exp(-3 * p) + 0.2 * abs(noise(self.seed, step, 2))
            ),
            "train/learning_rate": self.lr(step),
        }
        if self.dpo:
            row.update(self._dpo("train", step, 10))
        return row

    def eval(self, step: int) -> MetricRow:
        """The eval metrics at `step`."""
        row: MetricRow = {"eval/loss": self.loss(step, 3, lift=0.05)}
        if self.dpo:
            row.update(self._dpo("eval", step, 20))
        return row

    def _dpo(self, prefix: str, step: int, slot: int) -> MetricRow:
        """Preference metrics: rewards, accuracy, KL and per-side log-probabilities."""
        p = step / self.steps
        n = [0.05 * noise(self.seed, step, slot + i) for i in range(6)]
        chosen = 0.6 * p + n[0]
        rejected = -0.8 * p + n[1]
        values = (chosen, rejected, min(1.0, 0.5 + 0.42 * (1 - math.exp(-5 * p)) + n[2]))
        out = {
            f"{prefix}/{k}": _r(v)
            for k, v in zip(DPO_KEYS, (*values, chosen - rejected), strict=True)
        }
        out[f"{prefix}/kl"] = _r(0.001 + 0.04 * p + abs(n[3]) * 0.01)
        out[f"{prefix}/logps/chosen"] = _r(-210 + 25 * p + 20 * n[4])
        out[f"{prefix}/logps/rejected"] = _r(-225 - 35 * p + 20 * n[5])
        return out
