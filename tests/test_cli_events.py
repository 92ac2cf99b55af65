"""`watcherd events` and the reason, through the real CLI, against the real `together` CLI."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.cliharness import Recorded, recorded, together, watcherd
from watcherd.eventlog import reason

#: Finished jobs of every ending, in both casings of `type` (the casing follows the seed).
ENDINGS: dict[str, Any] = {
    "seed": 23,
    "jobs": [
        {"suffix": "done", "created": "-2h", "steps": 30, "n_checkpoints": 2, "wandb": True},
        {"suffix": "nan", "created": "-2h", "steps": 30, "diverge_at": 12},
        {"suffix": "crash", "created": "-2h", "steps": 40, "final": "error", "error_at_step": 20},
        {"suffix": "billing", "created": "-2h", "steps": 40, "final": "error"}
        | {"billing_limit": True, "error_at_step": 25},
        {"suffix": "baddata", "created": "-2h", "final": "user_error"},
        {"suffix": "stopped", "created": "-2h", "final": "cancelled", "cancel_at": 90},
        {"suffix": "dpo", "created": "-2h", "method": "dpo", "steps": 20, "eval_steps": 5},
    ],
}


@pytest.fixture(scope="module")
def rec(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorded]:
    """The jobs above, recorded by `watcherd run --until-done` with a hook that keeps
    every payload in `payloads.jsonl`; the sim still serving."""
    folder = tmp_path_factory.mktemp("events")
    out = folder / "payloads.jsonl"
    script = f"import sys; open({str(out)!r}, 'a').write(sys.stdin.read() + chr(10))"
    hooks = f'hooks:\n  - name: keep\n    command: ["{sys.executable}", "-c", "{script}"]\n'
    with recorded(folder, ENDINGS, hooks=hooks) as found:
        yield found


@pytest.fixture(scope="module")
def answers(rec: Recorded, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Both CLIs' `--json` event logs of every job, two at a time."""
    home = tmp_path_factory.mktemp("home")

    def run(job_id: str) -> tuple[Any, Any]:
        ours = watcherd(rec.config, "events", job_id, "--json")
        theirs = together(rec.sim, home, "fine-tuning", "list-events", job_id, "--json")
        return ours, theirs

    ids = rec.world.job_ids()
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(ids, pool.map(run, ids), strict=True))


#: Sets up `rec` and `answers` (a daemon run, then two CLIs per job; the `together` CLI
#: takes about 1.5 s of CPU to start): a loaded 2-core machine can outlast the default 120 s.
@pytest.mark.timeout(300)
def test_json_equals_together_list_events(rec: Recorded, answers: dict[str, Any]) -> None:
    """`events --json` equals `together fine-tuning list-events --json`, job by job."""
    casings = set()
    for job_id, (ours, theirs) in answers.items():
        assert ours.returncode == 0, ours.stderr
        assert theirs.returncode == 0, theirs.stdout + theirs.stderr
        mine = json.loads(ours.stdout)
        assert mine == json.loads(theirs.stdout)
        assert mine == rec.world.events(job_id)
        casings.add(mine[0]["type"])
    assert casings == {"job_pending", "JOB_PENDING"}


def test_table_has_the_cli_columns_and_every_event(rec: Recorded) -> None:
    """The table's columns are Type, Message, Created At; one line per event, in order."""
    job_id = rec.ids["billing"]
    done = watcherd(rec.config, "events", job_id, env={"COLUMNS": "200"})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["TYPE", "MESSAGE", "CREATED", "AT"]
    events = rec.world.events(job_id)
    assert [line.split()[0] for line in lines[1:]] == [e["type"] for e in events]
    assert events[-2]["message"] in lines[-2]


def test_together_retrieve_works_on_the_simulator(rec: Recorded, tmp_path: Path) -> None:
    """`together fine-tuning retrieve` prints the job and counts its events."""
    job_id = rec.ids["done"]
    done = together(rec.sim, tmp_path, "fine-tuning", "retrieve", job_id, columns=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Total events: {len(rec.world.events(job_id))}" in done.stdout
    raw = together(rec.sim, tmp_path, "fine-tuning", "retrieve", job_id, "--json")
    assert raw.returncode == 0, raw.stderr
    assert json.loads(raw.stdout)["total_price"] == rec.world.job(job_id).price


def test_every_terminal_job_has_the_reason_the_service_gave(rec: Recorded) -> None:
    """`list --json` gives each terminal job the reason its job object and events give."""
    done = watcherd(rec.config, "list", "--json")
    assert done.returncode == 0, done.stderr
    listed = {j["job_id"]: j for j in json.loads(done.stdout)}
    for job_id in rec.world.job_ids():
        status = rec.world.status_at(job_id)
        expected = reason(status, rec.world.job_object(job_id), rec.world.events(job_id))
        assert expected is not None
        assert listed[job_id]["reason"] == expected, job_id
    assert "Billing limit reached" in listed[rec.ids["billing"]]["reason"]


def test_unknown_job_and_no_events(rec: Recorded) -> None:
    """An unknown job exits 2; a malformed ID too; no traceback."""
    done = watcherd(rec.config, "events", "ft-unknown")
    assert done.returncode == 2 and "not in the database" in done.stderr
    assert watcherd(rec.config, "events", "nope").returncode == 2


def test_show_list_and_report_say_why(rec: Recorded, tmp_path: Path) -> None:
    """`show` has the reason and last events; `list` the reason under the row; the report too."""
    job_id = rec.ids["billing"]
    events = rec.world.events(job_id)
    shown = watcherd(rec.config, "show", job_id, env={"COLUMNS": "160"})
    assert shown.returncode == 0, shown.stderr
    assert "reason" in shown.stdout and "Billing limit reached" in shown.stdout
    assert f"Events (last 5 of {len(events)}" in shown.stdout
    assert events[-1]["message"] in shown.stdout.split("Events (")[1]
    data = json.loads(watcherd(rec.config, "show", job_id, "--json").stdout)
    assert data["events"] == events[-5:] and "Billing limit" in data["reason"]
    assert data["price"] == rec.world.job_object(job_id)["total_price"] / 1e9
    listed = watcherd(rec.config, "list", env={"COLUMNS": "160"}).stdout.splitlines()
    row = next(i for i, line in enumerate(listed) if line.startswith(job_id))
    assert listed[row + 1].startswith("  = Billing limit reached")
    done = next(i for i, line in enumerate(listed) if line.startswith(rec.ids["done"]))
    assert not listed[done + 1].startswith("  = ")
    report = tmp_path / "r.html"
    assert watcherd(rec.config, "report", "-o", str(report)).returncode == 0
    assert "Reason: Billing limit reached" in report.read_text()


def test_cost_sums_the_service_prices(rec: Recorded) -> None:
    """`cost --json` adds up each job's total_price, by day, model and job; --since filters."""
    prices = {j: rec.world.job_object(j)["total_price"] for j in rec.world.job_ids()}
    by_job = json.loads(watcherd(rec.config, "cost", "--by", "job", "--json").stdout)
    assert {g["key"]: round(g["dollars"] * 1e9) for g in by_job["groups"]} == prices
    assert by_job["total"]["running"] == 0
    by_day = json.loads(watcherd(rec.config, "cost", "--json").stdout)
    assert [g["key"] for g in by_day["groups"]] == ["2026-05-19"]
    assert by_day["total"]["dollars"] == pytest.approx(sum(prices.values()) / 1e9)
    later = json.loads(watcherd(rec.config, "cost", "--since", "2026-05-20", "--json").stdout)
    assert later["groups"] == [] and later["since"] == "2026-05-20"
    table = watcherd(rec.config, "cost", "--by", "model").stdout.splitlines()
    assert table[0].split() == ["MODEL", "JOBS", "SPEND"] and table[-1].startswith("total")
    bad = watcherd(rec.config, "cost", "--since", "soon")
    assert bad.returncode == 2 and "--since" in bad.stderr


def _strict(text: str) -> Any:
    """JSON that refuses NaN and Infinity, as JavaScript and Go do."""

    def refuse(name: str) -> None:
        raise ValueError(f"not strict JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def test_every_hook_payload_says_why_and_what(rec: Recorded) -> None:
    """Each terminal job's command hook got strict JSON with the reason, price and more."""
    lines = (rec.config.parent / "payloads.jsonl").read_text().splitlines()
    payloads = {p["job_id"]: p for p in map(_strict, lines)}
    assert set(payloads) == set(rec.world.job_ids())
    for job_id, payload in payloads.items():
        job = rec.world.job_object(job_id)
        assert payload["reason"] == reason(job["status"], job, rec.world.events(job_id))
        assert payload["price"] == job["total_price"] / 1e9
        assert payload["token_count"] == job["token_count"]
        assert set(payload["durations"]) == {"queue", "training", "upload", "total"}
        assert payload["model_output_name"] == job["model_output_name"]
    done = payloads[rec.ids["done"]]
    assert done["wandb_url"] == rec.world.job_object(rec.ids["done"])["wandb_url"]
    assert done["checkpoint_path"].endswith("checkpoint-15")
    assert done["model_path"].endswith("/final") and done["loss_sparkline"]
    assert payloads[rec.ids["baddata"]]["loss_sparkline"] is None
