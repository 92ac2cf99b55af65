"""A batch's new metric rows for the alert rules, column by column (`RowColumns`).

The fast decoder's batches (`model.MetricRecords`) already hold each row's timestamp,
epoch and losses; for other batches, or rules that watch other keys, the rows' texts
are decoded again, into small structs of just those keys.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from itertools import repeat
from operator import attrgetter, is_, itemgetter
from typing import Any

import msgspec

from watcherd.alerts.fold import LOSS_KEYS, RowColumns, value_of
from watcherd.model import EPOCH_KEY, TIMESTAMP_KEY, MetricRecord, MetricRecords, loads_exact


def rule_columns(
    records: Sequence[MetricRecord], keys: tuple[str, ...], seen: Mapping[str, int]
) -> RowColumns:
    """The records past their kind's last evaluated step (`seen`), as the rules' columns.

    Kinds and steps are the records'. A batch the fast decoder made (`MetricRecords`)
    already holds each row's timestamp, epoch and losses: when the rules watch no other
    keys, its columns serve as they are. Otherwise the timestamps, epochs and the
    watched `keys`' values are decoded from the rows' texts in one msgspec call into
    small structs holding only those keys (no dict per row), or, when msgspec refuses
    the lot (a bare `NaN` or `Infinity`), row by row by `loads_exact`. Either way the
    values are `loads_exact`'s.
    """
    new = _unseen(records, seen)
    if not new:
        return RowColumns()
    if new is records and isinstance(records, MetricRecords) and records.whole():
        decoded = {"train/loss": records.train_losses, "eval/loss": records.eval_losses}
        if decoded.keys() >= set(keys):
            values = {key: decoded[key] for key in keys}
            return RowColumns(records.kinds, records.steps, records.stamps, records.epochs, values)
    columns = _decoded([r[4] for r in new], keys)
    return RowColumns(
        list(map(itemgetter(0), new)),
        list(map(itemgetter(1), new)),
        columns[TIMESTAMP_KEY],
        columns[EPOCH_KEY],
        {key: columns[key] for key in keys},
    )


def _decoded(texts: list[str], keys: tuple[str, ...]) -> dict[str, list[Any]]:
    """The timestamp, epoch and `keys` columns of the rows' texts, as the rules read them."""
    decoder, names = _rule_decoder(keys)
    try:
        rows = decoder.decode(("[" + ",".join(texts) + "]").encode())
    except msgspec.MsgspecError:  # a bare NaN or Infinity, a number beyond a float
        exact = [loads_exact(text) for text in texts]
        return {name: [value_of(row, name) for row in exact] for name in names}
    return {
        name: _as_read(name, list(map(attrgetter(f"f{i}"), rows))) for i, name in enumerate(names)
    }


def _unseen(records: Sequence[MetricRecord], seen: Mapping[str, int]) -> Sequence[MetricRecord]:
    """The records whose step is past the last evaluated one of their kind (`records`
    itself when that is all of them)."""
    if not records or not seen or min(map(itemgetter(1), records)) > max(seen.values()):
        return records
    return [r for r in records if r[1] > seen.get(r[0], -1)]


@functools.cache
def _rule_decoder(keys: tuple[str, ...]) -> tuple[msgspec.json.Decoder[Any], tuple[str, ...]]:
    """A decoder of rows into structs of the timestamp, the epoch and `keys` (any JSON
    value, `UNSET` when absent; other keys are skipped), and the keys in field order."""
    names = tuple(dict.fromkeys((TIMESTAMP_KEY, EPOCH_KEY, *keys)))
    unset = msgspec.UNSET
    fields = [(f"f{i}", Any, msgspec.field(default=unset, name=n)) for i, n in enumerate(names)]
    row = msgspec.defstruct("RuleRow", fields, gc=False)
    return msgspec.json.Decoder(list[row]), names  # type: ignore[valid-type]


def _as_read(key: str, column: list[Any]) -> list[Any]:
    """A decoded column as `fold.value_of` reads rows: None when absent (`UNSET`), NaN
    for an explicit null loss, None for another null."""
    if key in LOSS_KEYS and None in column:
        column = [math.nan if value is None else value for value in column]
    if any(map(is_, column, repeat(msgspec.UNSET))):
        column = [None if value is msgspec.UNSET else value for value in column]
    return column
