"""Streamed metric decoding: the fast (msgspec) and exact (scanner) paths agree byte for byte."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.pgharness import PgServer
from tests.storeharness import query
from watcherd.alerts.fold import RowColumns
from watcherd.api.metricrows import (
    MetricsFramer,
    decode_body,
    exact_body,
    exact_records,
    fast_records,
)
from watcherd.api.rulerows import rule_columns
from watcherd.api.shapes import ShapeError
from watcherd.model import MetricRecord, MetricRecords, dumps_exact
from watcherd.store import PollRecord, Store
from watcherd.store.opening import open_store
from watcherd.store.rows import record_rows

pytestmark = pytest.mark.anyio

T0 = 1_779_196_193_564_587_000
KEYS = ("train/loss", "train/learning_rate", "train/epoch", "eval/loss", "eval/accuracy",
        "train/rewards/chosen", "train/grad_norm", "x:y")  # fmt: skip
INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
NUMBERS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
)
ROW = st.builds(
    lambda step, stamp, extra: {"train/global_step": step, **stamp, **extra},
    INT64,
    st.dictionaries(st.just("timestamp"), INT64, max_size=1),
    st.dictionaries(st.sampled_from(KEYS), NUMBERS, max_size=5),
)
SEPARATORS = st.sampled_from([(",", ":"), (", ", ": "), (",\n  ", " :\t")])


def region(rows: list[dict[str, Any]], separators: tuple[str, str] = (",", ":")) -> bytes:
    """The rows as the inside of a `metrics` array, spaced as a service might space them."""
    joiner = separators[0]
    return joiner.join(json.dumps(r, separators=separators) for r in rows).encode()


def train(step: int, loss: Any = 1.0, **extra: Any) -> dict[str, Any]:
    """A train row at `step`."""
    return {"timestamp": T0 + step, "train/global_step": step, "train/loss": loss, **extra}


@settings(max_examples=300, deadline=None)
@given(st.lists(ROW, max_size=8), SEPARATORS)
def test_fast_and_exact_records_are_identical(rows: list[dict[str, Any]], seps: Any) -> None:
    """Whatever the fast decoder accepts, it turns into exactly the exact decoder's records."""
    body = region(rows, seps)
    exact = exact_records(body)
    fast = fast_records(body)
    if all("x:y" not in r for r in rows):
        assert fast is not None, body  # plain numbers: the fast path takes them
    if fast is not None:
        assert fast == exact


def test_the_fast_path_refuses_what_only_the_exact_one_reads() -> None:
    """NaN, ±Infinity, nulls, escapes, float steps and huge numbers go to the exact decoder."""
    refused = [
        b'{"train/global_step": 1, "train/loss": NaN}',
        b'{"train/global_step": 1, "eval/loss": -Infinity}',
        b'{"train/global_step": 1, "train/loss": null}',
        b'{"train/global_step": 1, "train\\/loss": 2}',
        b'{"train/global_step": 1.0, "train/loss": 2}',
        b'{"train/global_step": 1, "train/loss": 1e400}',
        b'{"train/global_step": 1, "a{b}": 2}',
    ]
    for body in refused:
        assert fast_records(body) is None, body
        (record,) = exact_records(body)
        assert record[1] == 1
    nan = exact_records(refused[0])[0]
    assert nan[0] == "train" and isinstance(nan[3], float) and math.isnan(nan[3])
    assert nan[4] == refused[0].decode()
    null = exact_records(refused[2])[0]
    assert null == ("train", 1, None, None, refused[2].decode())  # kept as received
    assert exact_records(refused[3])[0][0] == "train"  # the escaped key is train/loss


@pytest.mark.parametrize(
    "body",
    [
        b'{"train/global_step": 1, "train/loss": "x"}',
        b'{"train/global_step": 1, "nested": {"a": 1}}',
        b'{"train/loss": 1}',
        b'{"train/global_step": 1.5}',
        b'{"train/global_step": 9223372036854775808}',
        b'{"train/global_step": 1, "timestamp": Infinity}',
        b"[1]",
        b'{"train/global_step": 1},',
        b'{"train/global_step": 1, "train/x": ' + b"9" * 400 + b"}",
    ],
)
def test_both_paths_refuse_rows_watcherd_cannot_store(body: bytes) -> None:
    """A row that is not a flat object of numbers with a 64-bit integer step: ShapeError."""
    assert fast_records(body) is None
    with pytest.raises(ShapeError):
        exact_records(body)


async def _stored(db: Path, records: list[MetricRecord]) -> list[tuple[Any, ...]]:
    async with Store.open(db, writer=True) as store:
        await store.record_poll(PollRecord("ft-a", 1.0, None, "running", records=records))
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT job_id, kind, step, timestamp, loss, seq, row_json FROM metrics ORDER BY id"
        ).fetchall()
        job = conn.execute(
            "SELECT max_step, train_loss, eval_loss, best_train_loss, best_eval_loss FROM jobs"
        ).fetchall()
    return [*rows, *job]


async def test_both_paths_store_byte_identical_rows(tmp_path: Path) -> None:
    """The same body stored through the fast and the exact decoder gives identical tables."""
    rows = [train(s, 2.0 - s / 1000, **{"train/lr": 1e-5}) for s in range(1, 400)]
    rows += [{"timestamp": T0 + 500, "train/global_step": 399, "eval/loss": 0.75}]
    rows += [train(400, 0.5, **{"train/rewards/chosen": 3})]
    body = region(rows, (", ", ": "))
    fast = fast_records(body)
    assert fast is not None
    stored_fast = await _stored(tmp_path / "fast.db", fast)
    stored_exact = await _stored(tmp_path / "exact.db", exact_records(body))
    assert stored_fast == stored_exact
    assert [r[6] for r in stored_fast[:2]] == [json.dumps(rows[0]), json.dumps(rows[1])]


STORED_SQL = (
    'SELECT job_id, kind, step, "timestamp", loss, seq, row_json FROM metrics ORDER BY id',
    "SELECT max_step, train_loss, eval_loss, best_train_loss, best_eval_loss FROM jobs",
)


async def _stored_at(target: str | Path, records: list[MetricRecord]) -> list[tuple[Any, ...]]:
    async with open_store(target, writer=True) as store:
        await store.record_poll(PollRecord("ft-a", 1.0, None, "running", records=records))
    return [row for sql in STORED_SQL for row in query(target, sql)]


async def test_decoded_rows_store_alike_in_both_backends(
    pg_server: PgServer, tmp_path: Path
) -> None:
    """Records of the fast and the exact decoder store the same rows in PostgreSQL as in SQLite."""
    rows = [train(s, 2.0 - s / 1000, **{"train/lr": 1e-5}) for s in range(1, 200)]
    rows += [{"timestamp": T0 + 500, "train/global_step": 199, "eval/loss": 0.75}]
    rows += [train(150, 0.5), train(200, 0.25, **{"train/rewards/chosen": 3})]
    body = region(rows, (", ", ": "))
    fast = fast_records(body)
    assert fast is not None
    in_sqlite = await _stored_at(tmp_path / "w.db", fast)
    assert len(in_sqlite) == 202  # 201 rows (step 150 once) and the job row
    assert await _stored_at(pg_server.fresh_schema(), fast) == in_sqlite
    assert await _stored_at(pg_server.fresh_schema(), exact_records(body)) == in_sqlite


async def test_a_nan_body_falls_back_and_stores_nan_exactly(tmp_path: Path) -> None:
    """A body with bare NaN (as the service writes it) is refused fast and stored exactly."""
    text = '{"metrics":[{"timestamp":' + str(T0) + ',"train/global_step":1,"train/loss":NaN}]}'
    framer = MetricsFramer()
    assert framer.feed(text.encode()) == []
    records = framer.finish()
    stored = await _stored(tmp_path / "nan.db", records)
    assert stored[0][4] is None and stored[0][6] == text[len('{"metrics":[') : -2]
    assert stored[1][1] == "NaN"  # the job's last train loss keeps NaN as text


BODY_ROWS = [train(s, 1.0 / s) for s in range(1, 300)] + [
    {"timestamp": T0 + 301, "train/global_step": 299, "eval/loss": math.nan},
    train(300, math.inf),
    {"timestamp": T0 + 302, "train/global_step": 300, "train/epoch": 1, "eval/x": None},
]


@pytest.mark.parametrize("chunk", [1, 7, 100, 4096, 1 << 20])
@pytest.mark.parametrize(
    "layout",
    [
        '{"metrics":[%s]}',
        ' {\n "metrics" : [\n%s\n ] }\n',
        '{"object":"list","metrics":[%s],"note":{"a":[1]}}',
        '{"metrics":[%s],"next":null}',
    ],
)
def test_framing_in_any_chunks_gives_the_whole_body_records(chunk: int, layout: str) -> None:
    """Chunked, cut into small batches, or read whole: the same records, in API order."""
    body = layout.replace("%s", ",".join(dumps_exact(r) for r in BODY_ROWS)).encode()
    whole = exact_body(body.decode())
    framer = MetricsFramer(batch_bytes=2000)
    batches = [b for i in range(0, len(body), chunk) for b in framer.feed(body[i : i + chunk])]
    got = [r for batch in batches for r in batch] + framer.finish()
    assert repr(got) == repr(whole)  # repr: NaN equals NaN
    assert len(whole) == len(BODY_ROWS)
    if chunk < 4096 and layout.startswith('{"metrics"'):
        assert len(batches) > 3  # streamed in batches, not read whole


@pytest.mark.parametrize(
    "body",
    [
        b'{"metrics": [{"train/global_step": 4',
        b'{"metrics": [{"train/global_step": 4},]}',
        b'{"metrics": [{"train/global_step": 4}]} x',
        b'{"metrics": [{"train/global_step": 4}], "metrics": []}',
        b'{"metrics": [{"train/global_step": 4}] ',
        b'{"metrics": 5}',
        b"[]",
        b"",
    ],
)
def test_malformed_bodies_are_refused_at_the_end(body: bytes) -> None:
    """Truncated, trailing commas or data, a second metrics key, a wrong shape: ShapeError."""
    with pytest.raises(ShapeError):
        decode_body(body)


@pytest.mark.parametrize("body", [b"{}", b'{"metrics": null}', b'{"metrics": []}'])
def test_empty_forms_mean_no_rows(body: bytes) -> None:
    """`{}`, `metrics: null` and an empty list all mean no rows."""
    assert decode_body(body) == []


def test_the_framer_holds_about_one_batch_never_the_body() -> None:
    """Fed a 3 MB body in 64 KiB chunks, the framer never buffers much more than a batch."""
    rows = ",".join(dumps_exact(train(s, 0.5)) for s in range(30_000))
    body = b'{"metrics":[' + rows.encode() + b"]}"
    assert len(body) > 2_000_000
    framer = MetricsFramer(batch_bytes=256 * 1024)
    most, count = 0, 0
    for i in range(0, len(body), 65536):
        count += sum(len(b) for b in framer.feed(body[i : i + 65536]))
        most = max(most, framer.buffered)
    count += len(framer.finish())
    assert count == 30_000
    assert most < 256 * 1024 + 65536


def _columns(cols: RowColumns) -> str:
    """The columns as comparable text (repr: NaN equals NaN)."""
    return repr([*map(list, (cols.kinds, cols.steps, cols.stamps, cols.epochs)), cols.values])


RULE_KEYS = ("train/loss", "eval/loss", "timestamp", "x:y")


@settings(max_examples=200, deadline=None)
@given(st.lists(ROW, min_size=1, max_size=30))
def test_rows_for_the_rules_decode_as_the_exact_decoder_does(rows: list[dict[str, Any]]) -> None:
    """`rule_columns` gives the columns of `loads_exact`'s rows, kinds and steps the records'."""
    records = exact_records(region(rows))
    exact = [json.loads(r[4]) for r in records]
    got = rule_columns(records, RULE_KEYS, {})
    assert _columns(got) == _columns(RowColumns.of_rows(exact, RULE_KEYS))


@settings(max_examples=200, deadline=None)
@given(st.lists(ROW, min_size=1, max_size=30), SEPARATORS)
def test_a_fast_batch_hands_its_columns_to_the_rules_and_the_store(
    rows: list[dict[str, Any]], separators: tuple[str, str]
) -> None:
    """A fast-decoded batch's own columns give what its records, taken apart, give."""
    batch = fast_records(region(rows, separators))
    if batch is None:  # e.g. a float beyond msgspec's range: the exact path's batch
        return
    assert isinstance(batch, MetricRecords) and batch.whole()
    plain = list(batch)
    for keys in (("train/loss", "eval/loss"), ("eval/loss",), RULE_KEYS):
        assert _columns(rule_columns(batch, keys, {})) == _columns(rule_columns(plain, keys, {}))
    assert _page(record_rows("ft-x", batch)) == _page(record_rows("ft-x", plain))


def _page(page: Any) -> str:
    """A page's columns as comparable text."""
    names = ("kinds", "steps", "stamps", "losses", "texts", "raw_losses")
    return repr([list(getattr(page, name)) for name in names])


def test_a_batch_changed_after_decoding_is_taken_apart_again() -> None:
    """Records appended to a batch are not in its columns: both readers see them all."""
    batch = fast_records(region([train(1), train(2)]))
    assert batch is not None
    batch.append(exact_records(region([train(3)]))[0])
    assert not batch.whole()
    assert list(record_rows("ft-x", batch).steps) == [1, 2, 3]
    assert list(rule_columns(batch, ("train/loss",), {}).steps) == [1, 2, 3]


def test_rows_for_the_rules_with_nan_or_huge_numbers_decode_row_by_row() -> None:
    """Rows msgspec refuses (NaN, 1e400) come through `loads_exact`, with the same columns."""
    texts = [*map(dumps_exact, BODY_ROWS[:20]), '{"train/global_step":30,"eval/loss":NaN}',
             '{"train/global_step":31,"train/loss":1e400,"timestamp":5}']  # fmt: skip
    records = exact_records(",".join(texts))
    got = rule_columns(records, RULE_KEYS, {})
    exact = [json.loads(t) for t in texts]
    assert _columns(got) == _columns(RowColumns.of_rows(exact, RULE_KEYS))
    assert math.isnan(got.values["eval/loss"][-2]) and got.values["train/loss"][-1] == math.inf


def test_rows_for_the_rules_read_an_explicit_null_loss_as_nan() -> None:
    """A null loss is NaN to the rules, a missing one absent, another null key absent."""
    texts = [
        '{"train/global_step":1,"train/loss":null,"x:y":null}',
        '{"train/global_step":2,"train/loss":0.5}',
        '{"train/global_step":2,"eval/loss":null}',
    ]
    records = exact_records(",".join(texts))
    got = rule_columns(records, RULE_KEYS, {})
    assert _columns(got) == _columns(RowColumns.of_rows([json.loads(t) for t in texts], RULE_KEYS))
    assert repr(got.values["train/loss"]) == "[nan, 0.5, None]"
    assert repr(got.values["eval/loss"]) == "[None, None, nan]"
    assert got.values["x:y"] == [None, None, None]


def test_rows_for_the_rules_skip_the_steps_already_evaluated() -> None:
    """Only rows past `seen[kind]` are decoded for the rules; none at all gives empty columns."""
    records = exact_records(region([train(1), train(2), {"train/global_step": 2, "eval/loss": 1}]))
    got = rule_columns(records, RULE_KEYS, {"train": 1, "eval": 5})
    assert (list(got.kinds), list(got.steps)) == (["train"], [2])
    assert _columns(rule_columns(records, RULE_KEYS, {"train": 9, "eval": 9})) == _columns(
        RowColumns()
    )
