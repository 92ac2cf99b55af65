"""Planning one page's write in Python, from one read of what is stored.

`record_polls` reads each page's job row, its newest rows and the (kind, step) keys
stored in the page's step range, for every page of a batch in one query
(`STORED_SQL`). From that, `plan_page` works out exactly which rows are new, the train
rows' `seq` ranks, and the job fields they change, so the page is written with one
`executemany` and one job UPDATE.

A page whose new train rows all sort after the stored ones (the usual case) gets its
ranks here; otherwise the rows go in unnumbered and `renumber` is set, and the caller
renumbers the job's train rows in SQL (see `sampling`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from itertools import accumulate, compress, islice, repeat
from operator import eq, le, lt, not_
from typing import Any, Final

from watcherd.store.numbers import loss_text
from watcherd.store.rows import PageRows

KINDS: Final = ("train", "eval")

#: What is stored for each page of a batch: one row a page, led by its index in the
#: batch (rows come in no set order), in one statement (a statement per page cost a trip
#: through the GIL each).
#: One parameter, `batch_param`: a JSON array of [job_id, lowest step, highest step].
#: Each row: the page's index, then the job row's fields, the newest train row
#: ("timestamp step seq") and eval row ("timestamp step") as text, and the steps of
#: each kind stored within the page's range ("s,s,..."): the stored keys a page can
#: meet. Integers travel as decimal text, exact; `parse_stored` reads the row.
STORED_SQL: Final = (
    "SELECT p.key, j.job_id, j.status, j.max_step, j.best_train_loss, j.best_eval_loss,"
    " (SELECT timestamp || ' ' || step || ' ' || seq FROM metrics WHERE job_id = p.job"
    "  AND kind = 'train' AND seq IS NOT NULL ORDER BY seq DESC LIMIT 1),"
    " (SELECT timestamp || ' ' || step FROM metrics WHERE job_id = p.job"
    "  AND kind = 'eval' ORDER BY timestamp DESC, step DESC LIMIT 1),"
    " (SELECT group_concat(step) FROM metrics WHERE job_id = p.job AND kind = 'train'"
    "  AND step BETWEEN p.lo AND p.hi),"
    " (SELECT group_concat(step) FROM metrics WHERE job_id = p.job AND kind = 'eval'"
    "  AND step BETWEEN p.lo AND p.hi)"
    " FROM (SELECT key, json_extract(value, '$[0]') AS job, json_extract(value, '$[1]') AS lo,"
    "  json_extract(value, '$[2]') AS hi FROM json_each(?1)) AS p"
    " LEFT JOIN jobs AS j ON j.job_id = p.job"
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

    inserts: Inserts
    renumber: bool
    fields: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Inserts:
    """A page's `metrics` inserts, zipped from its columns each time they are read
    (a 200,000-row page never becomes a list of tuples); `len` counts them."""

    page: PageRows
    seqs: Sequence[int | None]

    def __len__(self) -> int:
        return len(self.page)

    def __iter__(self) -> Iterator[InsertParams]:
        page = self.page
        columns = (page.kinds, page.steps, page.stamps, page.losses, page.texts, self.seqs)
        return zip(repeat(page.job_id), *columns, strict=False)  # repeat: endless


def batch_param(batch: Iterable[PageRows]) -> str:
    """The parameter of `STORED_SQL` for these pages: each one's job and step range."""
    return json.dumps([_span(page) for page in batch])


def _span(page: PageRows) -> tuple[str, int, int]:
    if not page.steps:
        return page.job_id, 0, -1
    return page.job_id, min(page.steps), max(page.steps)


def parse_stored(row: Sequence[Any]) -> Stored:
    """A row of `STORED_SQL` (without its index; the PostgreSQL store's read gives the
    same row) as a `Stored`."""
    train = None if row[5] is None else [int(n) for n in row[5].split()]
    evaluation = None if row[6] is None else [int(n) for n in row[6].split()]
    return Stored(
        exists=row[0] is not None,
        status=row[1],
        max_step=row[2],
        best={"train": row[3], "eval": row[4]},
        newest={
            "train": None if train is None else (train[0], train[1]),
            "eval": None if evaluation is None else (evaluation[0], evaluation[1]),
        },
        next_seq=0 if train is None else train[2] + 1,
        taken=frozenset(_keys("train", row[7]) + _keys("eval", row[8])),
    )


def _keys(kind: str, steps: str | None) -> list[tuple[str, int]]:
    """The (kind, step) keys of a "s,s,..." list of stored steps (None: none stored)."""
    return [] if steps is None else [(kind, int(step)) for step in steps.split(",")]


#: Pages of up to this many rows (a steady poll brings a handful) are planned row by
#: row: on a few rows the column passes cost more to set up than they save (about 60
#: against 18 us for an 8-row page).
SMALL_PAGE: Final = 64


def plan_page(stored: Stored, page: PageRows) -> PagePlan:
    """The rows not stored yet (first of each key, as ON CONFLICT keeps), ranked.

    A short page is planned row by row (`plan_rows`), a long one column by column
    (`plan_columns`); both give the same plan.
    """
    return plan_rows(stored, page) if len(page) <= SMALL_PAGE else plan_columns(stored, page)


def plan_rows(stored: Stored, page: PageRows) -> PagePlan:
    """`plan_page` one row at a time: for the few rows of a steady poll."""
    kept = _first_unstored(stored, page)
    if len(kept) < len(page):
        page = page.select(kept)
    order = list(zip(page.stamps, page.steps, strict=True))
    rows: dict[str, list[int]] = {kind: [] for kind in KINDS}
    for i, kind in enumerate(page.kinds):
        rows[kind].append(i)
    seqs: list[int | None] = [None] * len(page)
    train = sorted(rows["train"], key=order.__getitem__)
    last = stored.newest["train"]
    renumber = bool(train) and last is not None and order[train[0]] < last
    if not renumber:
        for rank, i in enumerate(train, stored.next_seq):
            seqs[i] = rank
    touched = {
        kind: (max(mine, key=order.__getitem__), [page.losses[i] for i in mine])
        for kind, mine in rows.items()
        if mine
    }
    return PagePlan(Inserts(page, seqs), renumber, _metric_fields(stored, page, touched))


def plan_columns(stored: Stored, page: PageRows) -> PagePlan:
    """`plan_page` in a few C-level passes per column: for 200,000-row pages.

    A page whose rows of each kind come in API order with distinct steps (the usual
    case) is planned without a tuple per row, and its inserts are zipped from the
    columns as they are written; any other page takes the general way, with the same
    result.
    """
    kinds = _Kinds(page)
    if not kinds.distinct_and_new(stored):
        page = page.select(_first_unstored(stored, page))
        kinds = _Kinds(page)
    seqs, renumber = _ranks(stored, page, kinds)
    touched = {
        kind: (_newest(page, kinds, kind), compress(page.losses, kinds.mask[kind]))
        for kind in KINDS
        if True in kinds.mask[kind]
    }
    return PagePlan(Inserts(page, seqs), renumber, _metric_fields(stored, page, touched))


class _Kinds:
    """Where each kind's rows are in a page, their steps, and whether they come in API
    order with each kind's steps rising (so distinct)."""

    def __init__(self, page: PageRows) -> None:
        self.page = page
        train = list(map(eq, page.kinds, repeat("train")))
        self.mask = {"train": train, "eval": list(map(not_, train))}  # kinds are these two
        self.steps = {kind: list(compress(page.steps, m)) for kind, m in self.mask.items()}
        self.rising = all(_rising(steps) for steps in self.steps.values())
        self.ordered = self.rising and (
            _sorted(page.stamps)
            or all(_sorted(list(compress(page.stamps, m))) for m in self.mask.values())
        )

    def distinct_and_new(self, stored: Stored) -> bool:
        """True when no key repeats within the page and none is stored already."""
        for kind, steps in self.steps.items():
            taken = [step for k, step in stored.taken if k == kind]
            if taken or not self.rising:
                unique = set(steps)
                if len(unique) < len(steps) or not unique.isdisjoint(taken):
                    return False
        return True

    def rows(self, kind: str) -> list[int]:
        """The indices of the kind's rows, in page order."""
        return list(compress(range(len(self.page)), self.mask[kind]))

    def in_api_order(self, kind: str) -> list[int]:
        """The indices of the kind's rows, sorted by (timestamp, step)."""
        rows = self.rows(kind)
        if self.ordered:
            return rows
        return sorted(rows, key=lambda i: (self.page.stamps[i], self.page.steps[i]))


def _rising(values: list[int]) -> bool:
    return all(map(lt, values, islice(values, 1, None)))


def _sorted(values: Sequence[int]) -> bool:
    return all(map(le, values, islice(values, 1, None)))


def _first_unstored(stored: Stored, page: PageRows) -> list[int]:
    """The rows whose key is neither stored nor met earlier in the page."""
    seen = set(stored.taken)
    kept: list[int] = []
    for i, key in enumerate(zip(page.kinds, page.steps, strict=True)):
        if key not in seen:
            seen.add(key)
            kept.append(i)
    return kept


def _ranks(stored: Stored, page: PageRows, kinds: _Kinds) -> tuple[list[int | None], bool]:
    """Each row's `seq` when the train rows append (else all None and renumber: True)."""
    none: list[int | None] = [None] * len(page)
    train = kinds.mask["train"]
    if True not in train:
        return none, False
    first = train.index(True) if kinds.ordered else kinds.in_api_order("train")[0]
    last = stored.newest["train"]
    if last is not None and (page.stamps[first], page.steps[first]) < last:
        return none, True
    if kinds.ordered:  # ranks in page order: a running count of the train rows
        counts = accumulate(train, initial=stored.next_seq - 1)
        next(counts)
        seqs = [rank if is_train else None for rank, is_train in zip(counts, train, strict=True)]
        return seqs, False
    for rank, i in enumerate(kinds.in_api_order("train"), stored.next_seq):
        none[i] = rank
    return none, False


def _metric_fields(
    stored: Stored, page: PageRows, touched: Mapping[str, tuple[int, Iterable[float | None]]]
) -> dict[str, Any]:
    """max_step, and the last and best loss of each kind the new rows touch: `touched`
    gives each such kind's newest row (by index) and the `loss` column of its rows."""
    if not page.steps:
        return {}
    top = max(page.steps)
    fields: dict[str, Any] = {
        "max_step": top if stored.max_step is None else max(top, stored.max_step)
    }
    for kind, (newest_at, losses) in touched.items():
        newest = stored.newest[kind]
        if newest is None or (page.stamps[newest_at], page.steps[newest_at]) > newest:
            fields[f"{kind}_loss"] = loss_text(page.raw_losses[newest_at])
        present = [v for v in losses if v is not None]
        prior = stored.best[kind]
        candidates = present if prior is None else [*present, prior]
        fields[f"best_{kind}_loss"] = min(candidates) if candidates else None
    return fields


def _newest(page: PageRows, kinds: _Kinds, kind: str) -> int:
    """The index of the kind's newest row by (timestamp, step) (the first of equals)."""
    if kinds.ordered:
        return len(page) - 1 - kinds.mask[kind][::-1].index(True)
    return max(kinds.rows(kind), key=lambda i: (page.stamps[i], page.steps[i]))
