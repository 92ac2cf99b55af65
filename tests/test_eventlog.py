"""Reading Together's event log: stable keys, both casings, the reason, restart targets."""

from __future__ import annotations

from typing import Any

from watcherd.eventlog import event_keys, event_type, last_field, reason, restart_target


def _event(
    kind: str, message: str, at: str = "2026-05-19T13:00:00Z", **extra: Any
) -> dict[str, Any]:
    return {"object": "fine-tune-event", "created_at": at, "type": kind, "message": message} | extra


def test_keys_stay_the_same_as_the_log_grows() -> None:
    """An event keeps its key when later responses append more events."""
    log = [_event("job_pending", "created"), _event("job_start", "started")]
    grown = [*log, _event("training_start", "go", "2026-05-19T13:05:00Z")]
    assert event_keys(grown)[:2] == event_keys(log)
    assert len(set(event_keys(grown))) == 3


def test_identical_events_at_one_instant_both_keep_a_key() -> None:
    """Two identical warnings logged at the same instant are two events, not one."""
    twice = [_event("warning", "slow node"), _event("warning", "slow node")]
    keys = event_keys(twice)
    assert len(set(keys)) == 2
    assert event_keys([*twice, _event("warning", "slow node")])[:2] == keys


def test_casing_and_level_do_not_change_the_key() -> None:
    """`JOB_ERROR` and `job_error` with another level or an extra field key alike."""
    lower = _event("job_error", "boom", level="error")
    upper = _event("JOB_ERROR", "boom", level="Error", step=3)
    assert event_keys([lower]) == event_keys([upper])
    assert event_type(upper) == "job_error"
    assert event_type(_event("COMPRESSING_MODEL", "x")) == "model_compressing"
    assert event_type(_event("SOMETHING_NEW", "x")) == "something_new"


def test_reason_prefers_the_job_error_then_the_last_problem() -> None:
    """The job object's error wins; else the last error/warning/billing message; else the last."""
    log = [
        _event("job_start", "started"),
        _event("WARNING", "loss spiked", level="Warning"),
        _event("billing_limit", "Billing limit reached"),
        _event("refund", "Refunded $1"),
    ]
    assert reason("error", None, log) == "Billing limit reached"
    assert reason("error", {"error": {"message": "OOM"}}, log) == "OOM"
    assert reason("error", {"error": "disk full"}, log) == "disk full"
    assert reason("cancelled", None, [_event("job_stopped", "Job cancelled")]) == "Job cancelled"
    assert reason("completed", None, [_event("job_complete", "done")]) == "done"
    assert reason("running", None, log) is None
    assert reason("error", None, []) is None
    assert reason("error", None, [_event("odd", "x", level="legacy_ierror"), log[0]]) == "x"


def test_restart_target_from_a_field_or_the_message() -> None:
    """A `job_restarted` event names the new job in a field or in its message."""
    by_field = _event("job_restarted", "restarted", new_job_id="ft-new-1")
    by_text = _event("JOB_RESTARTED", "Job ft-old restarted as ft-new-2 (node lost).")
    assert restart_target(by_field, "ft-old") == "ft-new-1"
    assert restart_target(by_text, "ft-old") == "ft-new-2"
    assert restart_target(_event("job_restarted", "restarted in place"), "ft-old") is None
    assert restart_target(_event("job_error", "see ft-new-3"), "ft-old") is None


def test_last_field_reads_the_newest_value() -> None:
    """The last checkpoint path wins over earlier ones."""
    log = [
        _event("checkpoint_save", "a", checkpoint_path="s3://a"),
        _event("checkpoint_save", "b", checkpoint_path="s3://b"),
        _event("job_complete", "done"),
    ]
    assert last_field(log, "checkpoint_path") == "s3://b"
    assert last_field(log, "model_path") is None


def test_a_problem_without_a_text_message_still_names_the_reason() -> None:
    """A job_error whose message is not text gives its type, never a later 'done'."""
    log = [
        _event("job_start", "started"),
        {"type": "JOB_ERROR", "created_at": "2026-05-19T13:01:00Z", "message": {"code": 7}},
        _event("job_complete", "done"),
    ]
    assert reason("error", None, log) == "job_error"
    numbered = [*log[:1], {"type": "job_error", "message": 137}]
    assert reason("error", None, numbered) == "job_error: 137"
    assert reason("user_error", None, [_event("job_complete", "done")]) is None
    assert reason("completed", None, [_event("job_complete", "done")]) == "done"
