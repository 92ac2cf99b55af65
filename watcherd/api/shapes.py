"""What the fine-tuning service sends, checked before anyone trusts it.

Parsers here take already-decoded JSON (from `loads_exact`, so integers stay exact and
NaN/±Infinity survive) and either return typed values or raise `ShapeError`; the client
turns that into a `MalformedResponseError` carrying the HTTP details. Job bodies are
read first by msgspec into small structs holding only the fields the poller reads
(`job_from_body`, `jobs_from_body`); a body it refuses (NaN, an unexpected type) goes
through `loads_exact` and the parsers below, with the same result (a byte that is not
UTF-8, even in a field msgspec skips, goes that way too). Metric bodies are
streamed: see `metricrows`.

Leniency rules, chosen so that nothing partial or wrong is ever written:

- A job needs a valid `ft-` ID and a non-empty string status; any status is kept verbatim,
  except `missing`, watcherd's own word for a job the service stopped knowing: a server
  saying it is refused, so that hooks `on: missing` only ever mean watcherd's verdict.
  In a job listing, entries whose ID is not a valid `ft-` ID are skipped (they can never
  be watched); any other bad entry rejects the whole listing.
- Job objects and events may nest at most `MAX_DEPTH` levels (the service uses about
  four): deeper ones are refused before anything walks them recursively.
- A number watcherd computes with must fit a float: an integer of 310 digits as a
  metric value or as `progress.seconds_remaining` rejects the response (the service
  never sends one; a float conversion of it would raise `OverflowError`).
- `{"metrics": null}` and `{}` mean no rows. A metric value of `null` is dropped from
  its row (the key is absent, as if never logged); any other non-number (strings,
  booleans, lists, objects) rejects the whole response. Every row needs an
  integer-valued `train/global_step`, and its `timestamp` (if any) must be finite; both
  must fit in 64 bits, as the store keeps them.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import msgspec

from watcherd.errors import InvalidJobIdError
from watcherd.model import (
    MISSING,
    STEP_KEY,
    TIMESTAMP_KEY,
    MetricFilter,
    MetricRow,
    dumps_exact,
    loads_exact,
    validate_job_id,
)

SNIPPET_CHARS = 200
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
#: The deepest nesting of arrays and objects accepted in a job object or an event.
MAX_DEPTH: Final = 32
_FLOAT_MAX: Final = sys.float_info.max
_CONTAINERS: Final = (dict, list)


class ShapeError(ValueError):
    """A decoded body that does not have the shape the API documents."""


@dataclass(frozen=True, slots=True)
class Job:
    """A fine-tuning job as the service reported it; `text` is the object's JSON text.

    From a list body, `text` is a `msgspec.Raw` view into that body (no copy per job).
    """

    id: str
    status: str
    text: bytes | msgspec.Raw = field(repr=False)
    seconds_remaining: float | None = None
    updated_at: str | None = None
    model: str | None = None
    model_output_name: str | None = None

    @property
    def raw(self) -> dict[str, Any]:
        """The object as received, decoded exactly (on demand: few polls need it)."""
        text = self.text
        obj: dict[str, Any] = loads_exact(text if isinstance(text, bytes) else bytes(text))
        return obj

    def facts(self) -> dict[str, Any]:
        """The fields of `JOB_FACTS` as `raw` holds them (None when absent), read from
        the text by msgspec without decoding the rest (the exact way when it refuses)."""
        text = self.text
        try:
            found = _FACTS.decode(text)
        except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
            raw = self.raw
            return {key: raw.get(key) for key in JOB_FACTS}
        return {key: getattr(found, key) for key in JOB_FACTS}


def parse_job(obj: Any, *, expect_id: str | None = None, text: bytes | None = None) -> Job:
    """A `Job` from one decoded job object (`text`: its JSON text, if at hand)."""
    if not isinstance(obj, dict):
        raise ShapeError("a job is not a JSON object")
    job_id, status = obj.get("id"), obj.get("status")
    if not isinstance(job_id, str) or not isinstance(status, str) or not status:
        raise ShapeError("a job lacks a string 'id' or a non-empty string 'status'")
    if status == MISSING:
        raise ShapeError(f"status {MISSING!r} is watcherd's own (three 404s), not the service's")
    try:
        validate_job_id(job_id)
    except InvalidJobIdError as exc:
        raise ShapeError(str(exc)) from None
    if expect_id is not None and job_id != expect_id:
        raise ShapeError(f"asked for job {expect_id!r}, got {job_id!r}")
    check_depth(obj, "a job object")
    return Job(
        id=job_id,
        status=status,
        text=dumps_exact(obj).encode() if text is None else text,
        seconds_remaining=_seconds_remaining(obj.get("progress")),
        updated_at=_opt_str(obj.get("updated_at")),
        model=_opt_str(obj.get("model")),
        model_output_name=_opt_str(obj.get("model_output_name")),
    )


def parse_job_list(body: Any) -> list[Job]:
    """Jobs from `{"data": [...]}`, skipping entries without a valid `ft-` ID."""
    jobs = []
    for entry in _data_list(body, "data"):
        if _has_foreign_id(entry):
            continue
        jobs.append(parse_job(entry))
    return jobs


def parse_events(body: Any) -> list[dict[str, Any]]:
    """Events from `{"data": [...]}`; each must be an object."""
    events = _data_list(body, "data")
    if not all(isinstance(event, dict) for event in events):
        raise ShapeError("an event is not a JSON object")
    check_depth(events, "the events")
    return events


def metric_params(flt: MetricFilter | None) -> dict[str, str]:
    """Query parameters for `list_metrics`; filters left as None are not sent.

    Time bounds go out as ISO-8601 with an offset at microsecond precision: the lower
    bound rounded down and the upper bound rounded up, so no row is ever excluded.
    """
    if flt is None:
        return {}
    params: dict[str, str] = {}
    for name in ("global_step_from", "global_step_to"):
        value = getattr(flt, name)
        if value is not None:
            params[name] = str(int(value))
    if flt.logged_at_from is not None:
        params["logged_at_from"] = iso_from_ns(flt.logged_at_from, round_up=False)
    if flt.logged_at_to is not None:
        params["logged_at_to"] = iso_from_ns(flt.logged_at_to, round_up=True)
    if flt.resolution is not None:
        params["resolution"] = str(int(flt.resolution))
    return params


def iso_from_ns(ns: int, *, round_up: bool) -> str:
    """ISO-8601 UTC text with `+00:00` for nanoseconds since the epoch (to microseconds)."""
    micros = -(-ns // 1000) if round_up else ns // 1000
    seconds, micro = divmod(micros, 1_000_000)
    return datetime.fromtimestamp(seconds, tz=UTC).replace(microsecond=micro).isoformat()


def error_message(body: Any) -> str | None:
    """The service's message from `{"error": {"message": ...}}` or `{"message": ...}`."""
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])
    if isinstance(error, str):
        return error
    message = body.get("message")
    return message if isinstance(message, str) else None


def snippet(body: bytes, secret: str = "") -> str:
    """The start of a body as short printable text, with `secret` redacted."""
    text = body[: SNIPPET_CHARS * 4].decode("utf-8", errors="replace")
    if secret:
        text = text.replace(secret, "[REDACTED]")
    printable = "".join(ch if ch.isprintable() else " " for ch in text)
    return printable[:SNIPPET_CHARS]


def _data_list(body: Any, key: str) -> list[Any]:
    if not isinstance(body, dict):
        raise ShapeError("the response body is not a JSON object")
    items = body.get(key)
    if items is None:
        return []
    if not isinstance(items, list):
        raise ShapeError(f"'{key}' is not a list")
    return items


def parse_metric_row(row: Any, index: int) -> MetricRow:
    """One decoded metric row, checked; a row holding nulls comes back without them."""
    if not isinstance(row, dict):
        raise ShapeError(f"metrics[{index}] is not a JSON object")
    # The row is kept as parsed (no copy per row: a 200,000-row page stays one set of
    # dicts); only a row holding nulls is copied without them.
    clean: MetricRow = row
    if None in row.values():
        clean = {key: value for key, value in row.items() if value is not None}
    for key, value in clean.items():
        kind = type(value)  # json.loads makes exact types: no bool passes as an int here
        if kind is float:
            continue
        if kind is not int:
            raise ShapeError(f"metrics[{index}][{key!r}] is not a number")
        if not -_FLOAT_MAX <= value <= _FLOAT_MAX:
            raise ShapeError(f"metrics[{index}][{key!r}] is too large for a float")
    step = clean.get(STEP_KEY)
    if step is None or not _integral(step) or not _in_int64(step):
        raise ShapeError(f"metrics[{index}] lacks an integer {STEP_KEY!r} (64-bit)")
    stamp = clean.get(TIMESTAMP_KEY)
    if stamp is not None and not (_finite(stamp) and _in_int64(stamp)):
        raise ShapeError(f"metrics[{index}][{TIMESTAMP_KEY!r}] is not a finite 64-bit number")
    return clean


def _finite(value: int | float) -> bool:
    return isinstance(value, int) or math.isfinite(value)


def _in_int64(value: int | float) -> bool:
    """True if the store can keep `value` as an INTEGER (steps and timestamps are)."""
    return INT64_MIN <= value <= INT64_MAX


def _integral(value: int | float) -> bool:
    return isinstance(value, int) or (math.isfinite(value) and value.is_integer())


def _seconds_remaining(progress: Any) -> float | None:
    if not isinstance(progress, dict) or progress.get("estimate_available") is not True:
        return None
    value = progress.get("seconds_remaining")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, int) and not -_FLOAT_MAX <= value <= _FLOAT_MAX:
        raise ShapeError("progress.seconds_remaining is too large for a float")
    return float(value) if math.isfinite(value) else None


def check_depth(value: Any, what: str, limit: int = MAX_DEPTH) -> None:
    """Raise ShapeError if `value` nests arrays and objects more than `limit` deep.

    Level by level, so that a hostile depth costs a loop, never the Python stack.
    """
    level, depth = [value], 1
    while level:
        below = [
            child
            for item in level
            for child in (item.values() if type(item) is dict else item)
            if type(child) in _CONTAINERS
        ]
        if below and depth >= limit:
            raise ShapeError(f"{what} is nested more than {limit} levels deep")
        level, depth = below, depth + 1


def _opt_str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _has_foreign_id(entry: Any) -> bool:
    """True for a job object whose ID (a string, or none at all) is not one watcherd
    could ever watch: it is skipped instead of refusing the whole listing."""
    if not isinstance(entry, dict):
        return False
    if not isinstance(entry.get("id"), str):
        return True
    try:
        validate_job_id(entry["id"])
    except InvalidJobIdError:
        return True
    return False


class _Progress(msgspec.Struct, gc=False):
    estimate_available: bool | None = None
    seconds_remaining: int | float | None = None


class _JobHead(msgspec.Struct, gc=False):
    """The fields of a job the poller reads; the rest stays in the job's text."""

    id: str
    status: str
    progress: _Progress | None = None
    updated_at: str | None = None
    model: str | None = None
    model_output_name: str | None = None


#: The fields of a job object a poll reads besides those of `Job`: the alert rules'
#: (`watcherd.alerts`: the queue, the run's start, the ETA) and the spend's.
JOB_FACTS: Final = (
    "created_at",
    "started_at",
    "queue_depth",
    "progress",
    "n_epochs",
    "total_steps",
    "total_price",
    "token_count",
)


class _Facts(msgspec.Struct, gc=False):
    """`JOB_FACTS` as decoded values of any JSON type (msgspec keeps numbers exact)."""

    created_at: Any = None
    started_at: Any = None
    queue_depth: Any = None
    progress: Any = None
    n_epochs: Any = None
    total_steps: Any = None
    total_price: Any = None
    token_count: Any = None


class _Listing(msgspec.Struct, gc=False):
    data: list[_JobHead] | None = None


class _ListingTexts(msgspec.Struct, gc=False):
    data: list[msgspec.Raw] | None = None


_JOB = msgspec.json.Decoder(_JobHead)
_LISTING = msgspec.json.Decoder(_Listing)
_LISTING_TEXTS = msgspec.json.Decoder(_ListingTexts)
_FACTS = msgspec.json.Decoder(_Facts)


def job_from_body(body: bytes, *, expect_id: str | None = None) -> Job:
    """A `Job` from a retrieve (or cancel) body; ShapeError, or ValueError for bad JSON."""
    try:
        head = _JOB.decode(_utf8(body))
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return parse_job(loads_exact(body), expect_id=expect_id, text=body)
    return _job(head, body, expect_id)


def jobs_from_body(body: bytes) -> list[Job]:
    """Jobs from a list body (`{"data": [...]}`), as `parse_job_list` would give them."""
    try:
        listing, texts = _LISTING.decode(_utf8(body)), _LISTING_TEXTS.decode(body)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return parse_job_list(loads_exact(body))
    jobs = []
    for head, raw in zip(listing.data or (), texts.data or (), strict=True):
        try:
            validate_job_id(head.id)
        except InvalidJobIdError:
            continue  # a foreign ID: never watched
        jobs.append(_job(head, raw, None))
    return jobs


def _utf8(body: bytes) -> bytes:
    """`body` once it is known to be UTF-8 (else UnicodeDecodeError: the exact way reads
    it). msgspec checks only the strings it decodes, and a job's text is decoded whole
    later (`Job.raw`): a byte that is not UTF-8 anywhere must refuse the body now."""
    if not body.isascii():
        body.decode()
    return body


def _job(head: _JobHead, text: bytes | msgspec.Raw, expect_id: str | None) -> Job:
    """The `Job` of a decoded head, with `parse_job`'s checks (depth included)."""
    if not head.status:
        raise ShapeError("a job lacks a string 'id' or a non-empty string 'status'")
    if head.status == MISSING:
        raise ShapeError(f"status {MISSING!r} is watcherd's own (three 404s), not the service's")
    _check_text_depth(text)
    try:
        validate_job_id(head.id)
    except InvalidJobIdError as exc:
        raise ShapeError(str(exc)) from None
    if expect_id is not None and head.id != expect_id:
        raise ShapeError(f"asked for job {expect_id!r}, got {head.id!r}")
    progress = head.progress
    remaining = None
    if progress is not None and progress.estimate_available is True:
        value = progress.seconds_remaining
        remaining = None if value is None else _finite_float(value)
    return Job(head.id, head.status, text, remaining, head.updated_at, head.model,
               head.model_output_name)  # fmt: skip


def _finite_float(value: int | float) -> float | None:
    if isinstance(value, int) and not -_FLOAT_MAX <= value <= _FLOAT_MAX:
        raise ShapeError("progress.seconds_remaining is too large for a float")
    return float(value) if math.isfinite(value) else None


def _check_text_depth(text: bytes | msgspec.Raw) -> None:
    """`check_depth` on a job's text: only a text with more brackets than the limit can
    nest that deep, so most are never decoded here."""
    data = text if isinstance(text, bytes) else bytes(text)
    if data.count(b"{") + data.count(b"[") > MAX_DEPTH:
        check_depth(loads_exact(data), "a job object")
