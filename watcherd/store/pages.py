"""Planning one page's write in Python, from one read of what is stored.

`record_poll` reads the job row, its newest rows and the (kind, step) keys stored in
the page's step range, in one query (`STORED_SQL`). From that, `plan_page` works out
exactly which rows are new, the train rows' `seq` ranks, and the job fields they
change, so the page is written with one `executemany` and one job UPDATE.

A page whose new train rows all sort after the stored ones (the usual case) gets its
ranks here; otherwise the rows go in unnumbered and `renumber` is set, and the caller
renumbers the job's train rows in SQL (see `sampling`).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Final, cast

from watcherd.store.rows import MetricParams, loss_text

KINDS: Final = ("train", "eval")

#: Parameters: job_id, then the page's lowest and highest step: the stored keys in
#: that range (two ranges of the unique index, one per kind) are all a page can meet.
STORED_SQL: Final = (
    "SELECT j.job_id, j.status, j.max_step, j.best_train_loss, j.best_eval_loss,"
    " t.timestamp, t.step, t.seq, e.timestamp, e.step,"
    " (SELECT json_group_array(json_array(m.kind, m.step)) FROM metrics AS m"
    "  WHERE m.job_id = ?1 AND m.kind IN ('train', 'eval') AND m.step BETWEEN ?2 AND ?3)"
    " FROM (SELECT 1) LEFT JOIN jobs AS j ON j.job_id = ?1"
    " LEFT JOIN (SELECT timestamp, step, seq FROM metrics WHERE job_id = ?1"
    "  AND kind = 'train' AND seq IS NOT NULL ORDER BY seq DESC LIMIT 1) AS t ON 1"
    " LEFT JOIN (SELECT timestamp, step FROM metrics WHERE job_id = ?1"
    "  AND kind = 'eval' ORDER BY timestamp DESC, step DESC LIMIT 1) AS e ON 1"
)


#: The most pages `stored_sql` reads at once: SQLite's default limit on the terms of
#: one compound SELECT (SQLITE_MAX_COMPOUND_SELECT).
MAX_PAGES: Final = 500


@functools.cache
def stored_sql(count: int) -> str:
    """`STORED_SQL` for `count` pages (at most `MAX_PAGES`) in one query: rows led by
    the page's index.

    Parameters: `stored_params` of each page, one after the other.
    """
    return " UNION ALL ".join(_numbered(k) for k in range(count))


def _numbered(k: int) -> str:
    """`STORED_SQL` as the k-th part of `stored_sql`: its index first, parameters shifted."""
    shifted = re.sub(r"\?([123])", lambda m: f"?{3 * k + int(m.group(1))}", STORED_SQL)
    return shifted.replace("SELECT ", f"SELECT {k}, ", 1)


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


def stored_params(job_id: str, params: Sequence[MetricParams]) -> tuple[str, int, int]:
    """The parameters of `STORED_SQL` for this page: the job and its step range."""
    if not params:
        return job_id, 0, -1
    steps = list(map(_STEP, params))
    return job_id, min(steps), max(steps)


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
    Written for 200,000-row pages: per-row work is done by C loops where it can be.
    """
    keys = list(map(_KEY, params))
    if len(set(keys)) != len(keys) or not stored.taken.isdisjoint(keys):
        params, losses = _first_unstored(stored, keys, params, losses)
    order = list(map(_ORDER, params))  # (timestamp, step): API order within a kind
    train = [i for i, p in enumerate(params) if p[1] == "train"]
    seqs, renumber = _ranks(stored, train, order, len(params))
    inserts = cast(list[InsertParams], list(map(_add, params, zip(seqs))))
    return PagePlan(inserts, renumber, _metric_fields(stored, params, losses, train, order))


_KEY: Final = itemgetter(1, 2)
_STEP: Final = itemgetter(2)
_ORDER: Final = itemgetter(3, 2)
_add: Final = tuple.__add__


def _first_unstored(
    stored: Stored,
    keys: list[tuple[str, int]],
    params: Sequence[MetricParams],
    losses: Sequence[Any],
) -> tuple[list[MetricParams], list[Any]]:
    """The rows whose key is neither stored nor met earlier in the page."""
    seen = set(stored.taken)
    kept: list[int] = []
    for i, key in enumerate(keys):
        if key not in seen:
            seen.add(key)
            kept.append(i)
    return [params[i] for i in kept], [losses[i] for i in kept]


def _ranks(
    stored: Stored, train: list[int], order: list[tuple[int, int]], count: int
) -> tuple[list[int | None], bool]:
    """Each row's `seq` when the train rows append (else all None and renumber: True)."""
    seqs: list[int | None] = [None] * count
    if not train:
        return seqs, False
    ranked = sorted(train, key=order.__getitem__)
    last = stored.newest["train"]
    if last is not None and order[ranked[0]] < last:
        return seqs, True
    for rank, i in enumerate(ranked, stored.next_seq):
        seqs[i] = rank
    return seqs, False


def _metric_fields(
    stored: Stored,
    params: Sequence[MetricParams],
    losses: Sequence[Any],
    train: list[int],
    order: list[tuple[int, int]],
) -> dict[str, Any]:
    """max_step, last and best loss of each kind the new rows touch."""
    if not params:
        return {}
    top = max(map(_STEP, params))
    fields: dict[str, Any] = {
        "max_step": top if stored.max_step is None else max(top, stored.max_step)
    }
    chosen = set(train)
    evals = [i for i in range(len(params)) if i not in chosen] if len(train) < len(params) else []
    for kind, mine in (("train", train), ("eval", evals)):
        if not mine:
            continue
        newest_at = max(mine, key=order.__getitem__)
        newest = stored.newest[kind]
        if newest is None or order[newest_at] > newest:
            fields[f"{kind}_loss"] = loss_text(losses[newest_at])
        present = [v for v in (params[i][4] for i in mine) if v is not None]
        prior = stored.best[kind]
        candidates = present if prior is None else [*present, prior]
        fields[f"best_{kind}_loss"] = min(candidates) if candidates else None
    return fields
