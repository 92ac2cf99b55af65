"""Planning a page's write, by columns or by rows, gives what the reference plan gives.

`reference_plan` is `pages.plan_page` as it was first written over one tuple per row; the
generated pages hold rows out of order, repeated keys, keys stored already, equal
timestamps, NaN, integer and missing losses, and both kinds.
"""

from __future__ import annotations

import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from watcherd.model import MetricRecord
from watcherd.store import pages
from watcherd.store.numbers import loss_text, loss_value
from watcherd.store.rows import record_rows

JOB = "ft-plan-0001"


def reference_plan(stored: pages.Stored, records: list[MetricRecord]) -> tuple[Any, bool, Any]:
    """The plan of the records' rows, one tuple per row, as before the columns."""
    params = [
        (JOB, k, s, 0 if t is None else t, loss_value(loss), x) for k, s, t, loss, x in records
    ]
    losses = [r[3] for r in records]
    seen, kept = set(stored.taken), []
    for i, p in enumerate(params):
        if (p[1], p[2]) not in seen:
            seen.add((p[1], p[2]))
            kept.append(i)
    params, losses = [params[i] for i in kept], [losses[i] for i in kept]
    order = [(p[3], p[2]) for p in params]
    train = [i for i, p in enumerate(params) if p[1] == "train"]
    seqs: list[int | None] = [None] * len(params)
    renumber = False
    if train:
        ranked = sorted(train, key=order.__getitem__)
        last = stored.newest["train"]
        if last is not None and order[ranked[0]] < last:
            renumber = True
        else:
            for rank, i in enumerate(ranked, stored.next_seq):
                seqs[i] = rank
    inserts = [(*p, seq) for p, seq in zip(params, seqs, strict=True)]
    return inserts, renumber, _reference_fields(stored, params, losses, order)


def _reference_fields(
    stored: pages.Stored, params: list[Any], losses: list[Any], order: list[Any]
) -> dict[str, Any]:
    if not params:
        return {}
    top = max(p[2] for p in params)
    fields: dict[str, Any] = {
        "max_step": top if stored.max_step is None else max(top, stored.max_step)
    }
    for kind in ("train", "eval"):
        mine = [i for i, p in enumerate(params) if p[1] == kind]
        if not mine:
            continue
        newest_at = max(mine, key=order.__getitem__)
        if stored.newest[kind] is None or order[newest_at] > stored.newest[kind]:
            fields[f"{kind}_loss"] = loss_text(losses[newest_at])
        present = [params[i][4] for i in mine if params[i][4] is not None]
        prior = stored.best[kind]
        candidates = present if prior is None else [*present, prior]
        fields[f"best_{kind}_loss"] = min(candidates) if candidates else None
    return fields


_LOSS = st.one_of(
    st.floats(min_value=0.0, max_value=5.0),
    st.integers(min_value=0, max_value=3),
    st.sampled_from([None, math.nan, math.inf]),
)


@st.composite
def page_records(draw: st.DrawFn) -> list[MetricRecord]:
    """Records of one page: in order, or shuffled with repeats and equal timestamps."""
    count = draw(st.integers(min_value=0, max_value=30))
    shuffled = draw(st.booleans())
    records: list[MetricRecord] = []
    for i in range(count):
        step = draw(st.integers(min_value=0, max_value=40)) if shuffled else 10 + i
        stamp = draw(st.sampled_from([step * 10, step * 10, 5, None])) if shuffled else step * 10
        kind = draw(st.sampled_from(["train", "train", "eval"]))
        records.append((kind, step, stamp, draw(_LOSS), f'{{"n":{i}}}'))
    return records


@st.composite
def stored_states(draw: st.DrawFn) -> pages.Stored:
    """What a job may have stored before the page: nothing, or rows around the page's."""
    if not draw(st.booleans()):
        return pages.Stored(False, None, None, {"train": None, "eval": None},
                            {"train": None, "eval": None}, 0, frozenset())  # fmt: skip
    key = st.tuples(st.integers(min_value=0, max_value=500), st.integers(min_value=0, max_value=50))
    taken_key = st.tuples(
        st.sampled_from(["train", "eval"]), st.integers(min_value=0, max_value=40)
    )
    taken = draw(st.frozensets(taken_key, max_size=6))
    best = st.one_of(st.none(), st.floats(min_value=0.0, max_value=5.0))
    return pages.Stored(
        True, "running", draw(st.one_of(st.none(), st.integers(0, 60))),
        {"train": draw(best), "eval": draw(best)},
        {"train": draw(st.one_of(st.none(), key)), "eval": draw(st.one_of(st.none(), key))},
        draw(st.integers(min_value=0, max_value=9)), taken,
    )  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(stored_states(), page_records())
def test_both_plans_equal_the_reference_plan(
    stored: pages.Stored, records: list[MetricRecord]
) -> None:
    """Inserts, renumbering and job fields come out as the reference plan made them, by
    columns (long pages) and by rows (short pages) alike."""
    inserts, renumber, fields = reference_plan(stored, records)
    for plan in (pages.plan_columns, pages.plan_rows):
        got = plan(stored, record_rows(JOB, records))
        assert repr(list(got.inserts)) == repr(inserts), plan  # repr: NaN equals NaN
        assert got.renumber == renumber, plan
        assert repr(got.fields) == repr(fields), plan


def test_plan_page_agrees_with_both_ways_at_the_threshold() -> None:
    """Pages of `SMALL_PAGE` rows and one more: `plan_page` gives both ways' plan."""
    records: list[MetricRecord] = [
        ("train", i, 10 * i, 0.5, "x") for i in range(pages.SMALL_PAGE + 1)
    ]
    empty = pages.Stored(False, None, None, {"train": None, "eval": None},
                         {"train": None, "eval": None}, 0, frozenset())  # fmt: skip
    for count in (pages.SMALL_PAGE, pages.SMALL_PAGE + 1):
        page = record_rows(JOB, records[:count])
        got = pages.plan_page(empty, page)
        assert list(got.inserts) == list(pages.plan_rows(empty, page).inserts)
        assert list(got.inserts) == list(pages.plan_columns(empty, page).inserts)
        assert got.fields == {"max_step": count - 1, "train_loss": "0.5", "best_train_loss": 0.5}


def test_a_plain_page_keeps_its_losses_and_ranks_in_page_order() -> None:
    """Float losses pass through as the REAL column; NaN and ints are converted."""
    records: list[MetricRecord] = [
        ("train", 1, 10, 0.5, "a"), ("eval", 1, 11, math.nan, "b"),
        ("train", 2, 12, 2, "c"), ("train", 3, None, None, "d"),
    ]  # fmt: skip
    page = record_rows(JOB, records)
    assert list(page.losses) == [0.5, None, 2.0, None]
    assert list(page.stamps) == [10, 11, 12, 0]
    empty = pages.Stored(False, None, None, {"train": None, "eval": None},
                         {"train": None, "eval": None}, 4, frozenset())  # fmt: skip
    plan = pages.plan_page(empty, page)
    assert [row[6] for row in plan.inserts] == [5, None, 6, 4]  # the stamp-less row sorts first
