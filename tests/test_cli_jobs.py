"""`watcherd list`, `show`, `hooks`, `hooks retry`, `add` and `remove` as real subprocesses."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cliharness import Recorded, recorded, watcherd

HOOKS = (
    "hooks:\n"
    "  - name: sink\n    on: [completed]\n"
    '    command: ["/bin/sh", "-c", "cat > /dev/null"]\n'
    "  - name: broken\n    on: [error]\n    max_attempts: 1\n"
    '    command: ["/bin/sh", "-c", "echo no >&2; exit 3"]\n'
)
LIST_KEYS = {
    "job_id", "note", "watched", "status", "status_since", "step", "train_loss", "eval_loss",
    "seconds_remaining", "last_poll_at", "last_error", "model", "model_output_name", "hooks",
    "reason", "price", "token_count", "alerts", "eta", "cancel",
}  # fmt: skip
DELIVERY_KEYS = {
    "id", "job_id", "hook", "event", "previous_status", "state", "attempts", "occurred_at",
    "next_attempt_at", "updated_at", "last_error", "output_tail",
}  # fmt: skip


@pytest.fixture(scope="module")
def rec(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorded]:
    """Finished jobs recorded by the daemon; the errored job's hook ended dead (exit 1)."""
    with recorded(tmp_path_factory.mktemp("jobs"), hooks=HOOKS, exit_code=1) as found:
        yield found


def _json(rec: Recorded, *args: str) -> Any:
    done = watcherd(rec.config, *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_list_json_has_one_object_per_job(rec: Recorded) -> None:
    """`list --json`: every watched job with the documented keys and its final status."""
    jobs = _json(rec, "list")
    assert sorted(j["job_id"] for j in jobs) == sorted(rec.ids.values())
    assert all(set(j) == LIST_KEYS for j in jobs)
    by_id = {j["job_id"]: j for j in jobs}
    for job_id in rec.ids.values():
        assert by_id[job_id]["status"] == rec.world.status_at(job_id)
    sft = by_id[rec.ids["sft"]]
    assert (sft["step"], sft["watched"], sft["hooks"]) == (40, True, {"delivered": 1})
    assert by_id[rec.ids["err"]]["hooks"] == {"dead": 1}
    assert by_id[rec.ids["nan"]]["train_loss"] is None  # NaN: null in JSON


def test_list_text_is_a_table_without_colour(rec: Recorded) -> None:
    """`list` prints a header and one row per job, and no ANSI escapes off a terminal."""
    done = watcherd(rec.config, "list", env={"COLUMNS": "150"})
    lines = done.stdout.splitlines()
    assert lines[0].split()[:3] == ["ID", "NOTE", "STATUS"]
    for job_id in rec.ids.values():
        assert any(line.startswith(job_id) for line in lines)
    assert "1 dead!" in done.stdout and "\x1b[" not in done.stdout


def test_show_json_and_text(rec: Recorded) -> None:
    """`show`: the timeline as observed, metric summaries, deliveries; text has every part."""
    job_id = rec.ids["sft"]
    page = _json(rec, "show", job_id)
    assert set(page) == {
        *("job", "metrics_complete", "fields", "transitions", "phases", "metrics", "deliveries"),
        *("reason", "price", "events", "restart_of", "restarted_as", "alerts"),
    }
    assert page["metrics_complete"] is True
    assert [t["to"] for t in page["transitions"]] == ["completed"]
    assert page["metrics"]["train/loss"]["last_step"] == 40
    assert [d["id"] for d in page["deliveries"]] == [f"{job_id}:completed:sink"]
    text = watcherd(rec.config, "show", job_id).stdout
    for part in (job_id, "Timeline", "Metrics", "train/loss", "Hooks", "sink"):
        assert part in text


def test_hooks_json_and_filter(rec: Recorded) -> None:
    """`hooks --json` lists every delivery with the documented keys; `hooks JOB` filters."""
    everything = _json(rec, "hooks")
    assert all(set(d) == DELIVERY_KEYS for d in everything)
    completed = [j for s, j in rec.ids.items() if s in ("sft", "dpo", "nan")]
    want = {f"{j}:completed:sink": "delivered" for j in completed}
    want[f"{rec.ids['err']}:error:broken"] = "dead"
    assert {d["id"]: d["state"] for d in everything} == want
    only = _json(rec, "hooks", rec.ids["err"])
    assert [(d["hook"], d["attempts"], d["last_error"] is not None) for d in only] == [
        ("broken", 1, True)
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["hooks", "retry", "ft-x:error:nope"], "no hook delivery with id 'ft-x:error:nope'"),
        (["hooks", "retry"], "usage: watcherd hooks retry DELIVERY_ID"),
        (["hooks", "job-1"], "invalid job ID 'job-1'"),
        (["hooks", "ft-a", "ft-b"], "at most one JOB_ID"),
        (["show", "ft-nowhere"], "ft-nowhere is not in the database"),
        (["show", "ft-bad id"], "invalid job ID 'ft-bad id'"),
        (["add", "ft-ok", "nope", "ft-"], "invalid job ID 'nope'"),
        (["remove", "ft-ok", "ft-$x"], "invalid job ID 'ft-$x'"),
    ],
)
def test_usage_errors_exit_2(rec: Recorded, args: list[str], message: str) -> None:
    """Unknown deliveries and malformed IDs: exit 2 with a message naming them."""
    before = (rec.config.parent / "jobs.txt").read_text()
    done = watcherd(rec.config, *args)
    assert done.returncode == 2, done.stdout
    assert message in done.stderr and "Traceback" not in done.stderr
    assert (rec.config.parent / "jobs.txt").read_text() == before


def test_add_names_every_bad_id(rec: Recorded) -> None:
    """`add` with several malformed IDs names each of them and saves nothing."""
    done = watcherd(rec.config, "add", "x1", "ft-ok", "ft-a b")
    assert done.returncode == 2
    assert "'x1'" in done.stderr and "'ft-a b'" in done.stderr


def test_remove_keeps_history_and_add_brings_it_back(rec: Recorded) -> None:
    """`remove`: gone from `list`, still in `list --all`, `show`, `metrics`; `add` restores it."""
    job_id = rec.ids["dpo"]
    done = watcherd(rec.config, "remove", job_id)
    assert done.returncode == 0, done.stderr
    assert f"{job_id}: no longer watched" in done.stdout
    assert job_id not in [j["job_id"] for j in _json(rec, "list")]
    unwatched = {j["job_id"]: j for j in _json(rec, "list", "--all")}[job_id]
    assert (unwatched["watched"], unwatched["status"]) == (False, "completed")
    assert "(unwatched)" in watcherd(rec.config, "list", "--all", env={"COLUMNS": "150"}).stdout
    assert len(_json(rec, "metrics", job_id)) == len(rec.world.truth(job_id))
    assert _json(rec, "show", job_id)["job"]["watched"] is False
    again = watcherd(rec.config, "add", job_id, "--note", "back again")
    assert f"{job_id}: now watched" in again.stdout
    back = {j["job_id"]: j for j in _json(rec, "list")}[job_id]
    assert (back["watched"], back["note"]) == (True, "back again")


def test_add_twice_is_idempotent(rec: Recorded) -> None:
    """Adding a watched job again changes nothing and says so."""
    job_id = rec.ids["sft"]
    before = (rec.config.parent / "jobs.txt").read_text()
    done = watcherd(rec.config, "add", job_id)
    assert (done.returncode, done.stdout.splitlines()[0]) == (0, f"{job_id}: already watched")
    assert (rec.config.parent / "jobs.txt").read_text() == before


def test_add_and_remove_say_when_nothing_changed(tmp_path: Path) -> None:
    """No "(saved in ...)" when the jobs file was left alone: nothing to change, or no
    jobs file at all (and none is created)."""
    env, jobs = {"WATCHERD_CONFIG": ""}, tmp_path / "jobs.txt"
    gone = watcherd(None, "remove", "ft-abc", env=env, cwd=tmp_path)
    assert gone.stdout.splitlines() == [
        "ft-abc: was not watched",
        f"(nothing to change: there is no jobs file at {jobs})",
    ]
    assert gone.returncode == 0 and not jobs.exists()
    assert "saved in" in watcherd(None, "add", "ft-abc", env=env, cwd=tmp_path).stdout
    for args in (["add", "ft-abc"], ["remove", "ft-other"]):
        done = watcherd(None, *args, env=env, cwd=tmp_path)
        assert done.stdout.splitlines()[-1] == f"(nothing to change in {jobs})", args
    assert jobs.read_text() == "ft-abc\n"


def test_hooks_retry_requeues_the_same_id(rec: Recorded) -> None:
    """`hooks retry` puts a dead delivery back to pending, same id, attempts reset."""
    delivery = f"{rec.ids['err']}:error:broken"
    done = watcherd(rec.config, "hooks", "retry", delivery)
    assert done.returncode == 0, done.stderr
    assert "queued again" in done.stdout and "watcherd run" in done.stdout
    found = {d["id"]: d for d in _json(rec, "hooks")}[delivery]
    assert (found["state"], found["attempts"]) == ("pending", 0)


def test_newcomer_without_config_or_database(tmp_path: Path) -> None:
    """In an empty folder: `list` and `hooks` say what to do next; show/metrics exit 1."""
    env = {"WATCHERD_CONFIG": ""}
    listing = watcherd(None, "list", env=env, cwd=tmp_path)
    assert listing.returncode == 0 and "watcherd add" in listing.stdout
    assert watcherd(None, "list", "--json", env=env, cwd=tmp_path).stdout == "[]\n"
    assert watcherd(None, "hooks", env=env, cwd=tmp_path).returncode == 0
    shown = watcherd(None, "show", "ft-abc", env=env, cwd=tmp_path)
    assert shown.returncode == 1 and "no database yet" in shown.stderr
    assert "watcherd run" in shown.stderr
    retry = watcherd(None, "hooks", "retry", "ft-abc:completed:x", env=env, cwd=tmp_path)
    assert retry.returncode == 2 and not (tmp_path / "watcherd.db").exists()


def test_added_job_before_first_run_is_explained(tmp_path: Path) -> None:
    """`add` in an empty folder saves jobs.txt, and `list` says to start the daemon."""
    env = {"WATCHERD_CONFIG": ""}
    added = watcherd(None, "add", "ft-abc", "--note", "first", env=env, cwd=tmp_path)
    assert added.returncode == 0 and "watcherd run" in added.stdout
    assert (tmp_path / "jobs.txt").read_text() == "ft-abc  # first\n"
    listing = watcherd(None, "list", env=env, cwd=tmp_path)
    assert "1 job(s) configured, none polled yet" in listing.stdout


def test_missing_config_file_exits_78(tmp_path: Path) -> None:
    """A --config that does not exist: exit 78 naming the file."""
    done = watcherd(tmp_path / "nope.yaml", "list")
    assert done.returncode == 78
    assert "nope.yaml" in done.stderr and "cannot read config file" in done.stderr
