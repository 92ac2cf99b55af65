"""`watcherd list`: one row per job, as a table for people or as JSON for scripts.

JSON keys (stable): job_id, note, watched, status, status_since, step, train_loss,
eval_loss, seconds_remaining, last_poll_at, last_error, model, model_output_name,
hooks, alerts (rules with an open episode), eta ({at, seconds_remaining, source} or
null), cancel (who asked the service to cancel the job, why, and the outcome), reason
(why a terminal job ended, in the service's words), price (dollars, the last known; it
grows while a job runs), token_count. Times are ISO-8601 UTC strings, counts are ints,
and NaN or infinite numbers become null so that every JSON parser accepts the output.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from watcherd.model import DeliveryState, JobOverview, is_settled
from watcherd.views._fmt import (
    YEAR,
    Cell,
    Column,
    ago_texts,
    clip,
    duration,
    finite,
    grid,
    iso,
    number_texts,
    paint,
    real,
    status_style,
)
from watcherd.views.alerts import alerts_cell, cancel_json, cancel_text, eta_json, eta_text

__all__ = ["dollars", "finite", "iso", "job_json", "list_json", "render_list"]

#: Hook states in the order `list` and `show` summarise them (worst first).
HOOK_STATES: Final = (
    DeliveryState.DEAD,
    DeliveryState.FAILED,
    DeliveryState.RUNNING,
    DeliveryState.PENDING,
    DeliveryState.DELIVERED,
)

COLUMNS: Final = (
    Column("ID"),
    Column("NOTE", shrink=True, drop=8),
    Column("STATUS"),
    Column("SINCE", drop=2),
    Column("STEP", right=True, drop=6),
    Column("TRAIN", right=True, drop=7),
    Column("EVAL", right=True, drop=3),
    Column("ETA", right=True, drop=4),
    Column("POLLED", drop=1),
    Column("HOOKS", drop=5),
)
#: Shown only when some job has an open alert, and then never dropped.
ALERTS_COLUMN: Final = Column("ALERTS")


def render_list(jobs: Sequence[JobOverview], *, now: float, color: bool, width: int) -> str:
    """The job table; under a job's row its last error, and why it failed or was cancelled."""
    if not jobs:
        return "No jobs. Add one with `watcherd add JOB_ID`."
    texts, styles = _columns(jobs, now)
    columns: tuple[Column, ...] = COLUMNS
    if any(job.alerts for job in jobs):
        columns = (*COLUMNS, ALERTS_COLUMN)
        cells = [alerts_cell(job) for job in jobs]
        texts.append([text for text, _ in cells])
        styles.append([style for _, style in cells])
    lines = grid(columns, texts, styles, color=color, width=width)
    if not any(job.last_error or job.cancel or job.reason for job in jobs):
        return "\n".join(lines)
    out = lines[:1]
    for job, line in zip(jobs, lines[1:], strict=True):
        out.append(line)
        if job.last_error:
            out.append(paint("  ! " + clip(job.last_error, width - 4), "red", color))
        cancel = cancel_text(job.cancel)
        if cancel:
            out.append(paint("  x " + clip(cancel, width - 4), "yellow", color))
        if job.reason and job.status != "completed":
            out.append(paint("  = " + clip(job.reason, width - 4), "dim", color))
    return "\n".join(out)


def _columns(
    jobs: Sequence[JobOverview], now: float
) -> tuple[list[list[str]], list[list[str | None] | None]]:
    """The table's texts and styles, column by column (a list of 1,000 jobs is 10,000
    cells: a comprehension per column, and no call per cell for what needs none)."""
    statuses = [job.status for job in jobs]
    kinds = {status: (status_style(status), is_settled(status)) for status in set(statuses)}
    hooks = [hook_summary(job.hooks) if job.hooks else NO_HOOKS for job in jobs]
    texts = [
        [job.job_id for job in jobs],
        [job.note or "" for job in jobs],
        [(job.status or "-") + ("" if job.watched else " (unwatched)") for job in jobs],
        ago_texts([job.status_since for job in jobs], now, never="-"),
        ["-" if job.step is None else str(job.step) for job in jobs],
        number_texts([job.train_loss for job in jobs]),
        number_texts([job.eval_loss for job in jobs]),
        _etas(jobs, now, {status: kind[1] for status, kind in kinds.items()}),
        ago_texts([job.last_poll_at for job in jobs], now),
        [text for text, _ in hooks],
    ]
    styles: list[list[str | None] | None] = [None] * len(texts)
    styles[2] = [kinds[status][0] for status in statuses]
    styles[-1] = [style for _, style in hooks]
    return texts, styles


def eta(job: JobOverview, now: float) -> str:
    """Time left: watcherd's ETA with its source, else the service's last estimate less
    the time since that poll."""
    return _etas([job], now, {job.status: is_settled(job.status)})[0]


def _etas(jobs: Sequence[JobOverview], now: float, settled: dict[str | None, bool]) -> list[str]:
    """`eta` of each job (`settled` by status); the service's estimates, nearly all of a
    list, each whole number of seconds formatted once."""
    memo: dict[int, str] = {}
    texts = []
    for job in jobs:
        if settled[job.status]:
            texts.append("-")
            continue
        ours = None if job.eta_source == "service" else eta_text(job, now)
        remaining, polled = real(job.seconds_remaining), job.last_poll_at
        if ours is not None or remaining is None or polled is None:
            texts.append(ours or "-")
            continue
        left = remaining - max(0.0, now - polled)
        if not 1 <= left <= YEAR:
            texts.append(duration(left) if left >= 1 else "soon")
            continue
        key = int(left)
        text = memo.get(key)
        if text is None:
            text = memo[key] = duration(left)
        texts.append(text)
    return texts


NO_HOOKS: Final[Cell] = ("-", None)


def hook_summary(hooks: dict[str, int]) -> Cell:
    """`2 delivered`, `1 dead!, 1 delivered`: red when any is dead, yellow if failing."""
    known = [s for s in HOOK_STATES if hooks.get(s)]
    other = sorted(s for s in hooks if s not in HOOK_STATES and hooks[s])
    parts = [f"{hooks[s]} {s}{'!' if s == DeliveryState.DEAD else ''}" for s in known + other]
    if not parts:
        return NO_HOOKS
    dead, failed = hooks.get(DeliveryState.DEAD), hooks.get(DeliveryState.FAILED)
    style = "red" if dead else "yellow" if failed else None
    return (", ".join(parts), style)


def list_json(jobs: Sequence[JobOverview], now: float | None = None) -> list[dict[str, Any]]:
    """The jobs as JSON-ready dicts (see the module docstring for the keys)."""
    return [job_json(job, now) for job in jobs]


def job_json(job: JobOverview, now: float | None = None) -> dict[str, Any]:
    """One job's overview as a JSON-ready dict (`now` for the ETA's seconds remaining)."""
    return {
        "job_id": job.job_id,
        "note": job.note,
        "watched": job.watched,
        "status": job.status,
        "status_since": iso(job.status_since),
        "step": job.step,
        "train_loss": finite(job.train_loss),
        "eval_loss": finite(job.eval_loss),
        "seconds_remaining": finite(job.seconds_remaining),
        "last_poll_at": iso(job.last_poll_at),
        "last_error": job.last_error,
        "model": job.model,
        "model_output_name": job.model_output_name,
        "hooks": {state: int(count) for state, count in sorted(job.hooks.items())},
        "alerts": list(job.alerts),
        "eta": None if is_settled(job.status) else eta_json(job, now),
        "cancel": cancel_json(job.cancel),
        "reason": job.reason,
        "price": dollars(job.total_price),
        "token_count": job.token_count,
    }


def dollars(nano: int | None) -> float | None:
    """Nano-dollars (the API's total_price) as dollars."""
    return None if nano is None else nano / 1_000_000_000
