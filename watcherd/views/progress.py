"""`watcherd wait`'s view of each job: a live line on a terminal, plain lines otherwise.

A live line: status, step / total steps, a progress bar, the ETA and its source, the
last train and eval loss, and open alerts. Total steps come from the job object's
`total_steps` when it has one, else from `train/epoch` of the newest row and
`n_epochs` (steps per epoch x epochs).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from watcherd.model import JobOverview, is_settled
from watcherd.views._fmt import clip, number, paint, real, safe, status_style
from watcherd.views.alerts import eta_text

BAR: Final = 20


@dataclass(frozen=True, slots=True)
class JobView:
    """One job as `wait` shows it: its overview, last job object, newest `train/epoch`."""

    job: JobOverview
    raw: Mapping[str, Any] | None = None
    epoch: float | None = None


def total_steps(view: JobView) -> int | None:
    """The job's total steps, if the job object or its epochs tell."""
    raw = view.raw or {}
    total = raw.get("total_steps")
    if isinstance(total, int) and not isinstance(total, bool) and total > 0:
        return total
    epochs, epoch, step = raw.get("n_epochs"), real(view.epoch), view.job.step
    if isinstance(epochs, int) and epochs > 0 and epoch and epoch > 0 and step:
        return max(step, round(step * epochs / epoch))
    return None


def bar(fraction: float, width: int = BAR) -> str:
    """`[#####---------------]` for a fraction in [0, 1]."""
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def live_line(view: JobView, *, now: float, color: bool, width: int) -> str:
    """One job's live line, cut to `width` (colour never counts toward it)."""
    job = view.job
    parts: list[tuple[str, str | None]] = [
        (job.job_id, None),
        (job.status or "new", status_style(job.status)),
        (_steps(view), None),
        *((text, None) for text in _details(job, now)),
        (f"alerts: {', '.join(job.alerts)}" if job.alerts else "", "red"),
    ]
    out: list[str] = []
    used = 0
    for text, style in parts:
        room = width - used - (2 if out else 0)
        if not text or room <= 0:
            continue
        shown = clip(text, room)
        used += len(shown) + (2 if out else 0)
        out.append(paint(shown, style, color))
    return "  ".join(out)


def _steps(view: JobView) -> str:
    """`step 120/400 [######--------------] 30%`, or `step 120` without a total."""
    step, total = view.job.step, total_steps(view)
    if step is None:
        return ""
    if not total:
        return f"step {step}"
    return f"step {step}/{total} {bar(step / total)} {step / total:.0%}"


def _details(job: JobOverview, now: float) -> list[str]:
    """ETA (with its source) and the last losses."""
    out = []
    eta = None if is_settled(job.status) else eta_text(job, now)
    if eta:
        out.append(f"ETA {eta}")
    if job.train_loss is not None:
        out.append(f"train {number(job.train_loss)}")
    if job.eval_loss is not None:
        out.append(f"eval {number(job.eval_loss)}")
    return out


def plain_line(view: JobView) -> str:
    """A line for a log (no terminal): status, step, open alerts; control characters in
    what the service sent are removed, as everywhere on a terminal."""
    job = view.job
    parts = [f"{job.job_id}: {safe(job.status or 'new')}"]
    if job.step is not None:
        parts.append(f"step {job.step}")
    if job.alerts:
        parts.append(f"alerts: {', '.join(job.alerts)}")
    return ", ".join(parts)
