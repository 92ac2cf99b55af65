"""Planning one page's write in Python, from one read of what is stored.

`record_poll` reads the job row, its newest rows and which of the page's (kind, step)
keys are stored already, in one query (`STORED_SQL`). From that, `plan_page` works out
exactly which rows are new, the train rows' `seq` ranks, and the job fields they
change, so the page is written with one `executemany` and one job UPDATE.

A page whose new train rows all sort after the stored ones (the usual case) gets its
ranks here; otherwise the rows go in unnumbered and `renumber` is set, and the caller
renumbers the job's train rows in SQL (see `sampling`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from watcherd.store.rows import MetricParams, loss_text

KINDS: Final = ("train", "eval")

#: Parameters: job_id, then a JSON array of the page's [kind, step] keys.
#: CROSS JOIN keeps json_each outermost: one unique-index probe per key, never a scan.
STORED_SQL: Final = (
    "SELECT j.job_id, j.status, j.max_step, j.best_train_loss, j.best_eval_loss,"
    " t.timestamp, t.step, t.seq, e.timestamp, e.step,"
    " (SELECT json_group_array(json_array(m.kind, m.step)) FROM json_each(?2) AS k"
    "  CROSS JOIN metrics AS m ON m.job_id = ?1 AND m.kind = json_extract(k.value, '$[0]')"
    "  AND m.step = json_extract(k.value, '$[1]'))"
    " FROM (SELECT 1) LEFT JOIN jobs AS j ON j.job_id = ?1"
    " LEFT JOIN (SELECT timestamp, step, seq FROM metrics WHERE job_id = ?1"
    "  AND kind = 'train' AND seq IS NOT NULL ORDER BY seq DESC LIMIT 1) AS t ON 1"
    " LEFT JOIN (SELECT timestamp, step FROM metrics WHERE job_id = ?1"
    "  AND kind = 'eval' ORDER BY timestamp DESC, step DESC LIMIT 1) AS e ON 1"
)

#: (job_id, kind, step, timestamp, loss, row_json, seq): one `metrics` insert.
InsertParams = tuple[str, str, int, int, float | None, str, int | None]
Key = tuple[int, int]  # (timestamp, step): API order within one kind of one job


@dataclass(frozen=True, slots=True)
class Stored:
    """The job row and its newest rows as they stand before the page is written."""

    exists: bool
    status: str | None
    max_step: int | None
    best: dict[str, float | None]
    newest: dict[str, Key | None]
    next_seq: int
    taken: frozenset[tuple[str, int]]


@dataclass(frozen=True, slots=True)
class PagePlan:
    """What to insert, whether to renumber afterwards, and the job fields to set."""

    inserts: list[InsertParams]
    renumber: bool
    fields: dict[str, Any]


def stored_params(job_id: str, params: Sequence[MetricParams]) -> tuple[str, str]:
    """The parameters of `STORED_SQL` for this page."""
    return job_id, json.dumps([[p[1], p[2]] for p in params])


def parse_stored(row: Sequence[Any]) -> Stored:
    """The one row of `STORED_SQL` as a `Stored`."""
    train = None if row[5] is None else (int(row[5]), int(row[6]))
    evaluation = None if row[8] is None else (int(row[8]), int(row[9]))
    return Stored(
        exists=row[0] is not None,
        status=row[1],
        max_step=row[2],
        best={"train": row[3], "eval": row[4]},
        newest={"train": train, "eval": evaluation},
        next_seq=0 if row[7] is None else int(row[7]) + 1,
        taken=frozenset((str(kind), int(step)) for kind, step in json.loads(row[10])),
    )


def plan_page(stored: Stored, params: Sequence[MetricParams], losses: Sequence[Any]) -> PagePlan:
    """The rows not stored yet (first of each key, as ON CONFLICT keeps), ranked.

    `losses[i]` is the `{kind}/loss` of row i as decoded (None: none), for its text.
    """
    seen = set(stored.taken)
    fresh: list[tuple[MetricParams, Any]] = []
    for param, loss in zip(params, losses, strict=True):
        key = (param[1], param[2])
        if key not in seen:
            seen.add(key)
            fresh.append((param, loss))
    seqs, renumber = _ranks(stored, [p for p, _ in fresh])
    if seqs:
        inserts = [(*p, seqs.get(i)) for i, (p, _) in enumerate(fresh)]
    else:
        inserts = [(*p, None) for p, _ in fresh]
    return PagePlan(inserts, renumber, _metric_fields(stored, fresh))


def _ranks(stored: Stored, fresh: Sequence[MetricParams]) -> tuple[dict[int, int], bool]:
    """`seq` by index into `fresh` when its train rows append; else ({}, True)."""
    order = sorted((p[3], p[2], i) for i, p in enumerate(fresh) if p[1] == "train")
    if not order:
        return {}, False
    last = stored.newest["train"]
    if last is not None and (order[0][0], order[0][1]) < last:
        return {}, True
    return {i: stored.next_seq + n for n, (_, _, i) in enumerate(order)}, False


def _metric_fields(stored: Stored, fresh: Sequence[tuple[MetricParams, Any]]) -> dict[str, Any]:
    """max_step, last and best loss of each kind the new rows touch."""
    if not fresh:
        return {}
    steps = [p[2] for p, _ in fresh]
    fields: dict[str, Any] = {
        "max_step": max(steps if stored.max_step is None else [*steps, stored.max_step])
    }
    for kind in KINDS:
        mine = [(p, row) for p, row in fresh if p[1] == kind]
        if not mine:
            continue
        param, loss = max(mine, key=lambda pr: (pr[0][3], pr[0][2]))
        newest = stored.newest[kind]
        if newest is None or (param[3], param[2]) > newest:
            fields[f"{kind}_loss"] = loss_text(loss)
        losses = [p[4] for p, _ in mine if p[4] is not None]
        prior = stored.best[kind]
        candidates = losses if prior is None else [*losses, prior]
        fields[f"best_{kind}_loss"] = min(candidates) if candidates else None
    return fields
