"""The read path's shortcuts give exactly what the plain code gave: stored losses, ETAs."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from watcherd.model import JobOverview, dumps_exact, is_settled, loads_exact
from watcherd.store.numbers import loss_text, number, text_number
from watcherd.views._fmt import duration, real
from watcherd.views.alerts import eta_text
from watcherd.views.listing import _etas, eta

#: What a loss may be as decoded: any float, ints of any size, -0.0.
LOSSES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.sampled_from([0, -0.0, 0.0, 1e308, -1e-320, 2**53 + 1]),
)


def _same(a: float | None, b: float | None) -> bool:
    """Equal, NaN equal to NaN, and the same sign of zero."""
    if a is None or b is None:
        return a is b
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


@settings(max_examples=2000, deadline=None)
@given(LOSSES)
def test_a_stored_loss_reads_back_as_the_json_path_reads_it(loss: float) -> None:
    """`text_number` (float() first) equals `number(loads_exact(text))` on stored texts."""
    text = loss_text(loss)
    assert text is not None
    assert _same(text_number(text), number(loads_exact(text)))


@settings(max_examples=2000, deadline=None)
@given(st.one_of(LOSSES, st.sampled_from([True, None, "1.5", [1.0]])))
def test_a_loss_is_written_as_json_writes_it(loss: object) -> None:
    """`loss_text` (a float's repr first) is the JSON text of every number, NaN and
    ±Infinity included, and None for anything else."""
    expected = dumps_exact(loss) if number(loss) is not None else None
    assert loss_text(loss) == expected


def test_texts_float_refuses_take_the_json_path() -> None:
    """Texts that are not numbers read as the JSON path reads them (None), and `-0` as 0.0."""
    assert text_number("true") is None and text_number('"1"') is None
    assert _same(text_number("-0"), 0.0) and text_number(None) is None


def _reference_eta(job: JobOverview, now: float) -> str:
    """`eta` as it was written before the list was built column by column."""
    if is_settled(job.status):
        return "-"
    ours = eta_text(job, now)
    if ours is not None and job.eta_source != "service":
        return ours
    remaining = real(job.seconds_remaining)
    if remaining is None or job.last_poll_at is None:
        return "-"
    left = remaining - max(0.0, now - job.last_poll_at)
    return duration(left) if left >= 1 else "soon"


NOW = 1_800_000_000.0
TIMES = st.one_of(st.none(), st.floats(allow_nan=True), st.floats(NOW - 1e8, NOW + 1e8))
JOBS = st.builds(
    lambda status, source, at, remaining, polled: JobOverview(
        "ft-x", None, True, status, None, None, None, None, remaining, polled, None, None, None,
        {}, eta_at=at, eta_source=source,
    ),
    st.sampled_from([None, "running", "queued", "completed", "missing", "error"]),
    st.sampled_from([None, "service", "step_rate", "first_epoch", "other"]),
    TIMES,
    st.one_of(st.none(), st.floats(allow_nan=True), st.integers(-(10**400), 10**400)),
    TIMES,
)  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(st.lists(JOBS, max_size=20))
def test_the_eta_column_equals_eta_job_by_job(jobs: list[JobOverview]) -> None:
    """The column's ETAs (seconds formatted once each) are each job's own."""
    settled = {job.status: is_settled(job.status) for job in jobs}
    expected = [_reference_eta(job, NOW) for job in jobs]
    assert _etas(jobs, NOW, settled) == expected
    assert [eta(job, NOW) for job in jobs] == expected
