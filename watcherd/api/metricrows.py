"""Metric rows from a `list_metrics` body, streamed: exact values, no dict per row.

A body arrives in chunks; `MetricsFramer` cuts the `metrics` array into batches of
whole rows (about `BATCH_BYTES` each) without holding the body, and `decode_batch`
turns one batch into `MetricRecord`s: (kind, step, timestamp, loss, text), where
`text` is the row's JSON text exactly as received, `null` values included (an
explicit `null` loss is a NaN to the `nonfinite` rule, README "Alerts while a job runs").

Two decoders give byte-identical records:

- the fast one (msgspec) reads the whole batch in C into small structs holding the
  step, the timestamp, the two losses and the epoch, and cuts each row's text from
  the batch; its records keep those fields as columns (`model.MetricRecords`), which
  the store and the alert rules read instead of the records one by one. It refuses
  anything unusual: a bare `NaN`/`Infinity` (which the service writes and strict
  JSON decoders reject), a string escape, a non-number value, a float step, a number
  out of range, braces in a key;
- the exact one (the standard library's scanner, one row at a time, the checks of
  `shapes.parse_metric_row`) takes what the fast one refuses, and raises `ShapeError`
  for what watcherd cannot store.

`api.rulerows` gives the alert rules a batch's new rows as columns.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from itertools import compress, repeat
from operator import attrgetter, is_
from typing import Annotated, Any, Final

import msgspec

from watcherd.api.shapes import INT64_MAX, INT64_MIN, ShapeError, parse_metric_row
from watcherd.model import (
    EPOCH_KEY,
    STEP_KEY,
    TIMESTAMP_KEY,
    MetricRecord,
    MetricRecords,
    row_kind,
)

#: A batch is cut once this many bytes of rows are buffered (small pages are one batch).
BATCH_BYTES: Final = 1 << 20

Int64 = Annotated[int, msgspec.Meta(ge=INT64_MIN, le=INT64_MAX)]


class _Row(msgspec.Struct, gc=False):
    """The fields of a row that watcherd reads; other keys are skipped (and pre-checked)."""

    step: Int64 = msgspec.field(name=STEP_KEY)
    timestamp: Int64 | None = msgspec.field(name=TIMESTAMP_KEY, default=None)
    train_loss: int | float | None = msgspec.field(name="train/loss", default=None)
    eval_loss: int | float | None = msgspec.field(name="eval/loss", default=None)
    epoch: int | float | None = msgspec.field(name=EPOCH_KEY, default=None)  # for the rules


_FAST: Final = msgspec.json.Decoder(list[_Row])
#: A value that is not a number (string, literal, object, array): the fast path refuses.
_NOT_NUMBER: Final = re.compile(rb":[ \t\n\r]*[^ \t\n\r0-9-]")
#: Digits as "0", all else as " ": a run of 300 zeros is an integer too long for a float
#: (the exact path refuses it). Two C passes; a regex for it would try every digit.
_DIGIT_RUNS: Final = bytes(48 if 48 <= i <= 57 else 32 for i in range(256))
_LONG_NUMBER: Final = b"0" * 300
#: A row with braces only at its ends (checked by counting), so one regex finds them all.
_OBJECT: Final = re.compile(r"\{[^{}]*\}")
#: A train key other than the step and the epoch: `model.row_kind`, on the row's text.
_TRAIN_KEY: Final = re.compile(r'"train/(?!global_step"|epoch")')
_SCAN: Final[Callable[[str, int], tuple[Any, int]]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
_WS: Final = re.compile(r"[ \t\n\r]*")


def decode_batch(region: bytes) -> list[MetricRecord]:
    """Records for the rows in `region` (array elements, no brackets); fast when it can be."""
    return decode_array(b"[" + region + b"]")


def decode_array(array: bytes) -> list[MetricRecord]:
    """Records for the rows of `array` (`[` elements `]`); fast when it can be."""
    fast = _fast_array(array)
    return fast if fast is not None else exact_records(array[1:-1])


def fast_records(region: bytes) -> MetricRecords | None:
    """Records via msgspec, or None when the batch needs the exact decoder."""
    return _fast_array(b"[" + region + b"]")


def _fast_array(array: bytes) -> MetricRecords | None:
    """`fast_records` of the rows of `array` (`[` elements `]`, taken as one copy)."""
    if b"\\" in array or _NOT_NUMBER.search(array) is not None:
        return None
    if _LONG_NUMBER in array.translate(_DIGIT_RUNS):
        return None
    try:
        rows = _FAST.decode(array)
        text = str(memoryview(array)[1:-1], "utf-8").strip()
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None
    count = len(rows)
    if text.count("{") != count or text.count("}") != count:
        return None  # a brace inside a key: the rows cannot be cut by their braces
    # Flat rows, braces only at their ends: rows meet at "},{" (a NUL cannot occur in
    # valid JSON text, so it marks the cuts), or, spaced out, the regex finds them.
    texts = text.replace("},{", "}\0{").split("\0") if count else []
    if len(texts) != count:
        texts = _OBJECT.findall(text)
    return _zipped(rows, texts)


def _zipped(rows: list[_Row], texts: list[str]) -> MetricRecords:
    """The records of decoded rows, column by column: a row is `train` when it has a
    `train/loss`, or else when its text has another train key (`_TRAIN_KEY`)."""
    train, evals = list(map(_TRAIN_LOSS, rows)), list(map(_EVAL_LOSS, rows))
    kinds, losses = ["train"] * len(rows), train
    lossless = list(compress(range(len(rows)), map(is_, train, repeat(None))))
    if lossless:
        losses = list(train)
        for i in lossless:
            if _TRAIN_KEY.search(texts[i]) is None:
                kinds[i], losses[i] = "eval", evals[i]
    steps, stamps = list(map(_STEP, rows)), list(map(_STAMP, rows))
    epochs = list(map(_EPOCH, rows))
    return MetricRecords(
        kinds, steps, stamps, losses, texts, epochs=epochs, train_losses=train, eval_losses=evals
    )


_STEP, _STAMP, _EPOCH = attrgetter("step"), attrgetter("timestamp"), attrgetter("epoch")
_TRAIN_LOSS, _EVAL_LOSS = attrgetter("train_loss"), attrgetter("eval_loss")


def exact_records(region: bytes | str) -> list[MetricRecord]:
    """Records via the standard library's scanner (NaN and ±Infinity accepted); ShapeError."""
    try:
        text = region if isinstance(region, str) else region.decode()
    except UnicodeDecodeError as exc:
        raise ShapeError(f"the metrics are not UTF-8: {exc}") from None
    return [exact_record(value, raw, i) for i, (value, raw) in enumerate(elements(text, 0, None))]


def exact_record(value: Any, text: str, index: int) -> MetricRecord:
    """One decoded row and its text as a record, after `parse_metric_row`'s checks."""
    clean = parse_metric_row(value, index)  # checked without its nulls; the text keeps them
    kind = row_kind(value)  # a key present with null counts, as on the stored text
    stamp = clean.get(TIMESTAMP_KEY)
    return (kind, int(clean[STEP_KEY]), None if stamp is None else int(stamp),
            clean.get(f"{kind}/loss"), text)  # fmt: skip


def elements(text: str, start: int, close: str | None) -> list[tuple[Any, str]]:
    """The comma-separated JSON values filling `text` from `start`, with their texts."""
    found, end = elements_until(text, start, close)
    if close is None and end != len(text):
        raise ShapeError(f"invalid JSON: unexpected data at offset {end}")
    return found


def elements_until(text: str, start: int, close: str | None) -> tuple[list[tuple[Any, str]], int]:
    """Elements from `start` up to `close` (or the end); returns them and the stop offset."""
    found: list[tuple[Any, str]] = []
    i = _WS.match(text, start).end()  # type: ignore[union-attr]
    if i == len(text) or text[i] == close:
        return found, i
    while True:
        value, end = _scan(text, i)
        found.append((value, text[i:end]))
        i = _WS.match(text, end).end()  # type: ignore[union-attr]
        if i == len(text) or text[i] == close:
            return found, i
        if text[i] != ",":
            raise ShapeError(f"invalid JSON: expected ',' at offset {i}")
        i = _WS.match(text, i + 1).end()  # type: ignore[union-attr]


def _scan(text: str, at: int) -> tuple[Any, int]:
    """One JSON value at `at`: (value, end offset); ShapeError when there is none."""
    try:
        value, end = _SCAN(text, at)
    except StopIteration as exc:
        raise ShapeError(f"invalid JSON: no value at offset {exc.value}") from None
    except json.JSONDecodeError as exc:
        raise ShapeError(f"invalid JSON: {exc}") from None
    except RecursionError:
        raise ShapeError("invalid JSON: nested too deeply") from None
    return value, int(end)


def exact_body(text: str) -> list[MetricRecord]:
    """Records from a whole `{"metrics": [...]}` body of any layout (the slow path).

    The body must be one JSON object; `metrics` null or missing means no rows, and a
    second `metrics` key is refused (its rows would replace the first ones').
    """
    rows: list[MetricRecord] | None = None
    i = _WS.match(text).end()  # type: ignore[union-attr]
    if not text.startswith("{", i):
        raise ShapeError("the response body is not a JSON object")
    i = _WS.match(text, i + 1).end()  # type: ignore[union-attr]
    if text.startswith("}", i):
        return _only_space_after(text, i + 1, [])
    while True:
        key, i = _key(text, i)
        if key == "metrics":
            if rows is not None:
                raise ShapeError("the body has two 'metrics' keys")
            rows, i = _metrics_value(text, i)
        else:
            i = _scan(text, i)[1]
        i = _WS.match(text, i).end()  # type: ignore[union-attr]
        if text.startswith("}", i):
            return _only_space_after(text, i + 1, rows or [])
        if not text.startswith(",", i):
            raise ShapeError(f"invalid JSON: expected ',' or '}}' at offset {i}")
        i = _WS.match(text, i + 1).end()  # type: ignore[union-attr]


def _key(text: str, i: int) -> tuple[str, int]:
    """An object key and the offset of its value."""
    key, end = _scan(text, i)
    if not isinstance(key, str):
        raise ShapeError(f"invalid JSON: expected a key at offset {i}")
    colon = _WS.match(text, end).end()  # type: ignore[union-attr]
    if not text.startswith(":", colon):
        raise ShapeError(f"invalid JSON: expected ':' at offset {colon}")
    return key, _WS.match(text, colon + 1).end()  # type: ignore[union-attr]


def _metrics_value(text: str, i: int) -> tuple[list[MetricRecord], int]:
    """The records of a `metrics` value at `i` (null: none), and the offset after it."""
    if not text.startswith("[", i):
        value, end = _scan(text, i)
        if value is not None:
            raise ShapeError("'metrics' is not a list")
        return [], end
    found, end = elements_until(text, i + 1, "]")
    if not text.startswith("]", end):
        raise ShapeError("invalid JSON: the metrics list is not closed")
    return [exact_record(v, raw, n) for n, (v, raw) in enumerate(found)], end + 1


def _only_space_after(text: str, i: int, rows: list[MetricRecord]) -> list[MetricRecord]:
    if _WS.match(text, i).end() != len(text):  # type: ignore[union-attr]
        raise ShapeError(f"invalid JSON: extra data at offset {i}")
    return rows


_HEAD: Final = re.compile(rb'[ \t\n\r]*\{[ \t\n\r]*"metrics"[ \t\n\r]*:[ \t\n\r]*\[')
_TAIL: Final = re.compile(rb"(.*)\][ \t\n\r]*\}[ \t\n\r]*", re.DOTALL)
_LEAD: Final = re.compile(rb"[ \t\n\r]*,")
_SPACE: Final = re.compile(rb"[ \t\n\r]*")


class MetricsFramer:
    """Cuts a streamed `{"metrics": [...]}` body into batches of whole rows.

    `feed` each chunk and decode the batches it returns (each about `BATCH_BYTES`),
    then `finish` for the last one. A body that does not start `{"metrics": [` is
    kept whole and decoded at the end by the exact decoder (its size is capped by
    the caller). A cut is tried at the last `}` of the buffer; a cut that is not
    between rows (a brace inside a key) fails both decoders, and the buffer simply
    grows to the next try.
    """

    def __init__(self, batch_bytes: int = BATCH_BYTES) -> None:
        self._buf = bytearray()
        self._streaming: bool | None = None  # None: the head is not read yet
        self._first = True  # no row cut from the array yet
        self._batch = batch_bytes
        self._next_try = batch_bytes

    @property
    def buffered(self) -> int:
        """Bytes held now: the rows not cut yet (a body read whole: all of it so far)."""
        return len(self._buf)

    def feed(self, chunk: bytes) -> list[list[MetricRecord]]:
        """Take one chunk; return the batches of records it completed (often none)."""
        self._buf += chunk
        if self._streaming is None and not self._read_head(final=False):
            return []
        if not self._streaming or len(self._buf) < self._next_try:
            return []
        cut = self._buf.rfind(b"},") + 1 or self._buf.rfind(b"}") + 1
        records = self._try_cut(cut) if cut else None
        if records is None:
            self._next_try = len(self._buf) + self._batch
            return []
        self._next_try = self._batch
        return [records]

    def finish(self) -> list[MetricRecord]:
        """The records of the rest of the body; ShapeError if the body is not valid."""
        if self._streaming is None:
            self._read_head(final=True)
        body, self._buf = bytes(self._buf), bytearray()
        if not self._streaming:
            try:
                return exact_body(body.decode())
            except UnicodeDecodeError as exc:
                raise ShapeError(f"the body is not UTF-8: {exc}") from None
        tail = _TAIL.fullmatch(body)
        if tail is None:
            return self._exact_tail(body)
        return decode_batch(body[self._start(body, tail.end(1)) : tail.end(1)])

    def _read_head(self, *, final: bool) -> bool:
        """Decide streaming or whole once the head is in; False while it may still come."""
        head = _HEAD.match(self._buf)
        if head is not None:
            del self._buf[: head.end()]
            self._streaming = True
        elif final or len(self._buf) >= 256 or not _could_be_head(bytes(self._buf)):
            self._streaming = False
        return self._streaming is not None

    def _try_cut(self, cut: int) -> list[MetricRecord] | None:
        """Decode the rows before `cut` and drop them from the buffer; None if not a cut.

        The rows are copied out of the buffer once, inside brackets, for the decoders.
        """
        try:
            start = self._start(self._buf, cut)
            records = decode_array(b"".join((b"[", memoryview(self._buf)[start:cut], b"]")))
        except (ShapeError, ArithmeticError, RecursionError):
            return None  # not a cut between rows, or bad rows: `finish` will say which
        del self._buf[:cut]
        self._first = False
        return records

    def _start(self, data: bytes | bytearray, end: int) -> int:
        """Where the rows of `data[:end]` begin: after the comma that joins them to the
        previous batch (none before the first batch, or when there are no rows)."""
        if self._first or _SPACE.fullmatch(data, 0, end):
            return 0
        lead = _LEAD.match(data, 0, end)
        if lead is None or _SPACE.fullmatch(data, lead.end(), end):
            raise ShapeError("invalid JSON: expected ',' between metric rows")
        return lead.end()

    def _exact_tail(self, body: bytes) -> list[MetricRecord]:
        """The last rows and whatever follows the array, read by the exact decoder."""
        try:
            text = body.decode()
        except UnicodeDecodeError as exc:
            raise ShapeError(f"the body is not UTF-8: {exc}") from None
        start = 0
        if not self._first and text.strip() and not text.lstrip().startswith("]"):
            lead = _LEAD.match(body)
            if lead is None:
                raise ShapeError("invalid JSON: expected ',' between metric rows")
            start = lead.end()
        found, end = elements_until(text, start, "]")
        if not text.startswith("]", end):
            raise ShapeError("invalid JSON: the metrics list is not closed")
        records = [exact_record(v, raw, n) for n, (v, raw) in enumerate(found)]
        _rest_of_object(text, end + 1)
        return records


def _could_be_head(data: bytes) -> bool:
    """True while `data` may still grow into `{"metrics": [`."""
    text = re.sub(rb"[ \t\n\r]+", b"", data)
    return b'{"metrics":['.startswith(text) or text.startswith(b'{"metrics":[')


def _rest_of_object(text: str, i: int) -> None:
    """Check what follows the metrics array: more keys (not `metrics`), `}`, space."""
    while True:
        i = _WS.match(text, i).end()  # type: ignore[union-attr]
        if text.startswith("}", i):
            _only_space_after(text, i + 1, [])
            return
        if not text.startswith(",", i):
            raise ShapeError(f"invalid JSON: expected ',' or '}}' at offset {i}")
        key, i = _key(text, _WS.match(text, i + 1).end())  # type: ignore[union-attr]
        if key == "metrics":
            raise ShapeError("the body has two 'metrics' keys")
        i = _scan(text, i)[1]


def decode_body(body: bytes) -> list[MetricRecord]:
    """Every record of a complete body, by the same framing as a stream (for tests)."""
    framer = MetricsFramer()
    records = [r for batch in framer.feed(body) for r in batch]
    return records + framer.finish()
