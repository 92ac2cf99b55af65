"""Metric queries: `list_metrics` semantics in SQL, equal to model.filter_metrics."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.storeharness import Backend, query
from watcherd.model import MetricFilter, MetricRow, dumps_exact, filter_metrics, row_kind, sort_key
from watcherd.store import HookSub, PollRecord, Store
from watcherd.store.opening import open_store

T0 = 1_779_196_193_564_587_000


def row(kind: str, step: int, timestamp: int, loss: float = 1.0) -> MetricRow:
    """A train or eval row at `step`, logged at T0 + `timestamp`."""
    return {"timestamp": T0 + timestamp, "train/global_step": step, f"{kind}/loss": loss}


def truth(pages: Sequence[Sequence[MetricRow]]) -> list[MetricRow]:
    """What the store should hold: first row per (kind, step), in API order."""
    kept: dict[tuple[str, int], MetricRow] = {}
    for page in pages:
        for r in page:
            kept.setdefault((row_kind(r), r["train/global_step"]), r)
    return sorted(kept.values(), key=sort_key)


async def _store_and_query(
    target: str | Path,
    job_id: str,
    pages: Sequence[Sequence[MetricRow]],
    filters: Sequence[MetricFilter],
) -> list[list[str]]:
    async with open_store(target, writer=True) as store:
        for at, page in enumerate(pages):
            await store.record_poll(PollRecord(job_id, float(at), None, "running", page))
        return [await store.metrics_json(job_id, flt) for flt in filters]


def stored(
    backend: Backend, pages: Sequence[Sequence[MetricRow]], filters: Sequence[MetricFilter]
) -> list[list[str]]:
    """Record `pages` for a job never seen and run each filter against it."""
    with backend.per_example() as (target, job_id):
        return anyio.run(_store_and_query, target, job_id, pages, filters, backend="asyncio")


def expected(pages: Sequence[Sequence[MetricRow]], flt: MetricFilter) -> list[str]:
    """The reference answer as JSON texts (so NaN compares equal)."""
    return [dumps_exact(r) for r in filter_metrics(truth(pages), flt)]


bound = st.none() | st.integers(-2, 45)
filters = st.builds(
    MetricFilter,
    global_step_from=bound,
    global_step_to=bound,
    logged_at_from=st.none() | st.integers(-5, 500).map(lambda t: T0 + t),
    logged_at_to=st.none() | st.integers(-5, 500).map(lambda t: T0 + t),
    resolution=st.none() | st.integers(1, 25),
)
spec = st.tuples(
    st.sampled_from(["train", "train", "eval"]), st.integers(0, 40), st.integers(0, 400)
)


@st.composite
def paged_rows(draw: st.DrawFn) -> list[list[MetricRow]]:
    """Rows in pages; timestamps follow steps (the usual case) or are arbitrary."""
    specs = draw(st.lists(spec, min_size=draw(st.sampled_from([0, 20])), max_size=60))
    monotone = draw(st.booleans())
    rows = [row(k, s, s * 10 + (k == "eval") if monotone else t) for k, s, t in specs]
    cuts = sorted(draw(st.lists(st.integers(0, len(rows)), min_size=1, max_size=3)))
    edges = [0, *cuts, len(rows)]
    return [rows[a:b] for a, b in itertools.pairwise(edges)]


@settings(max_examples=150, deadline=None)
@given(pages=paged_rows(), flts=st.lists(filters, min_size=1, max_size=4))
def test_metrics_filters_equal_filter_metrics(
    backend: Backend, pages: list[list[MetricRow]], flts: list[MetricFilter]
) -> None:
    """Every filter combination gives exactly what model.filter_metrics gives, in order."""
    assert stored(backend, pages, flts) == [expected(pages, flt) for flt in flts]


def test_a_page_arriving_out_of_order_is_sampled_correctly(backend: Backend) -> None:
    """Train rows older than stored ones renumber the ranks; sampling stays exact."""
    late = [row("train", s, s * 10) for s in range(50)]
    early = [row("train", s, s * 10) for s in range(50, 100)] + [row("eval", 60, 601)]
    pages = [early, late]
    flts = [MetricFilter(resolution=7), MetricFilter(resolution=5, global_step_from=40)]
    assert stored(backend, pages, flts) == [expected(pages, flt) for flt in flts]


def test_sampling_with_bounds_that_leave_gaps_in_rank(backend: Backend) -> None:
    """Kept train rows that are not consecutive in API order are numbered in SQL instead."""
    stamps = [7, 3, 9, 1, 8, 2, 6, 0, 5, 4] * 4
    pages = [[row("train", s, t * 40 + s) for s, t in enumerate(stamps)]]
    flts = [MetricFilter(global_step_from=10, resolution=5), MetricFilter(resolution=5)]
    assert stored(backend, pages, flts) == [expected(pages, flt) for flt in flts]


@pytest.mark.anyio
async def test_200k_rows_in_pages_then_sampled_and_listed(tmp_path: Path) -> None:
    """Scale sanity: 200,000 rows in pages of 2,000; resolution and overview stay correct."""
    rows = [row("train", s, s * 10, loss=1.0 / (s + 1)) for s in range(200_000)]
    hooks = (HookSub("h", ("completed",)),)
    async with Store.open(tmp_path / "w.db", writer=True) as store:
        await store.sync_watched([(f"ft-{i}", None) for i in range(1000)], 0.0)
        for start in range(0, len(rows), 2000):
            page = rows[start : start + 2000]
            await store.record_poll(PollRecord("ft-0", 1.0, None, "running", page, hooks))
        for i in range(1, 1000):
            await store.record_poll(PollRecord(f"ft-{i}", 2.0, None, "completed", (), hooks))
        flt = MetricFilter(resolution=500)
        assert await store.metrics("ft-0", flt) == filter_metrics(rows, flt)
        listing = await store.overview()
        summary = await store.metrics_summary("ft-0")
    assert len(listing) == 1000 and sum(j.hooks.get("pending", 0) for j in listing) == 999
    assert (listing[0].step, summary.best_train_loss) == (199_999, 1.0 / 200_000)


async def _dump(
    target: str | Path, job_id: str, pages: Sequence[Sequence[MetricRow]]
) -> tuple[list[Any], str, int]:
    """Store `pages` one by one: every stored metric column, the summary, new_rows in all."""
    new = 0
    async with open_store(target, writer=True) as store:
        for at, page in enumerate(pages):
            rec = PollRecord(job_id, float(at), None, "running", page)
            new += (await store.record_poll(rec)).new_rows
        summary = repr(await store.metrics_summary(job_id))
    table = query(
        target,
        'SELECT kind, step, "timestamp", loss, seq, row_json FROM metrics WHERE job_id = ?'
        " ORDER BY kind, step",
        (job_id,),
    )
    return [tuple(r) for r in table], summary, new


def dumped(backend: Backend, pages: Sequence[Sequence[MetricRow]]) -> tuple[list[Any], str, int]:
    """`_dump` for a job never seen."""
    with backend.per_example() as (target, job_id):
        return anyio.run(_dump, target, job_id, pages, backend="asyncio")


def _split(rows: Sequence[MetricRow], sizes: Sequence[int]) -> list[list[MetricRow]]:
    edges = [0, *itertools.accumulate(sizes)]
    return [list(rows[a:b]) for a, b in itertools.pairwise(edges)] + [list(rows[edges[-1] :])]


@settings(max_examples=80, deadline=None)
@given(
    pages=paged_rows(),
    losses=st.lists(st.sampled_from([0.25, 1.0, 3.0, math.nan, math.inf]), min_size=60),
    sizes=st.lists(st.integers(1, 12), max_size=6),
    rnd=st.randoms(use_true_random=False),
)
def test_in_order_and_shuffled_pages_store_the_same(
    backend: Backend,
    pages: list[list[MetricRow]],
    losses: list[float],
    sizes: list[int],
    rnd: random.Random,
) -> None:
    """Ranks appended in Python (pages in order) equal ranks renumbered in SQL (shuffled)."""
    unique = truth(pages)  # distinct (kind, step): both orders must keep the same rows
    unique = [r | {f"{row_kind(r)}/loss": loss} for r, loss in zip(unique, losses, strict=False)]
    shuffled = list(unique)
    rnd.shuffle(shuffled)
    in_order, out_of_order = (
        dumped(backend, _split(unique, sizes)),
        dumped(backend, _split(shuffled, sizes)),
    )
    assert in_order == out_of_order
    table, _, new = in_order
    train = [t for t in table if t[0] == "train"]
    ranks = sorted(range(len(train)), key=lambda i: (train[i][2], train[i][1]))
    assert new == len(unique) and [train[i][4] for i in ranks] == list(range(len(train)))
    flts = [MetricFilter(resolution=3), MetricFilter(resolution=7, global_step_from=5)]
    assert stored(backend, [shuffled], flts) == [expected([shuffled], flt) for flt in flts]


def test_inclusive_refetches_append_ranks_without_gaps(backend: Backend) -> None:
    """Pages that repeat the stored top row rank only the new train rows: 0, 1, 2, ..."""
    pages = [
        [row("train", s, s * 10) for s in range(max(0, top - 1), top + 6)]
        + [row("eval", top + 5, (top + 5) * 10 + 1)]
        for top in range(0, 30, 6)
    ]
    table, _, new = dumped(backend, pages)
    assert new == 30 + len(pages)
    assert [t[4] for t in table if t[0] == "train"] == list(range(30))
