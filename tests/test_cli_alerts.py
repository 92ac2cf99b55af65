"""`watcherd alerts`, the ALERTS column, `show` and the report, against a daemon's database."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cliharness import watcherd
from tests.daemonharness import API_KEY, start_daemon, write_config
from watcherd.sim import SpeedClock, World, run_in_thread

#: Now: one job running with a NaN loss since step 100, one queued for 2 hours, one fine.
LIVE = {
    "seed": 9,
    "jobs": [
        {"suffix": "nan", "created": "-30m", "steps": 1000, "seconds_per_step": 5}
        | {"diverge_at": 100, "estimate": False, "n_epochs": 2},
        {"suffix": "stuck", "created": "-2h", "queue": "3h"},
        {"suffix": "fine", "created": "-10m", "steps": 1000, "seconds_per_step": 5},
    ],
}


@pytest.fixture(scope="module")
def polled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    """`watcherd run --once` over LIVE: its config and the job IDs by suffix."""
    folder = tmp_path_factory.mktemp("alerts")
    world = World(LIVE, clock=SpeedClock(1.0))  # the service's clock is ours, as in real life
    with run_in_thread(world, api_key=API_KEY) as sim:
        config = write_config(folder, sim.base_url, world.job_ids())
        assert start_daemon(config, "--once").wait(timeout=60) == 0
        yield config, {str(world.job(j).spec.suffix): j for j in world.job_ids()}


def test_alerts_lists_every_open_episode(polled: tuple[Path, dict[str, str]]) -> None:
    """`alerts --json` holds the NaN job's nonfinite and the queued job's queued_long."""
    config, ids = polled
    found = json.loads(watcherd(config, "alerts", "--json", "--open").stdout)
    assert sorted((a["job_id"], a["rule"], a["state"]) for a in found) == sorted(
        [(ids["nan"], "nonfinite", "open"), (ids["stuck"], "queued_long", "open")]
    )
    nan = next(a for a in found if a["rule"] == "nonfinite")
    assert nan["id"] == f"{ids['nan']}:alert.nonfinite:1"
    assert nan["key"] == "train/loss" and nan["value"] is None and nan["step"] >= 100


def test_alerts_table_and_filter_by_job(polled: tuple[Path, dict[str, str]]) -> None:
    """The table names rule, state and message; a JOB_ID narrows it to that job."""
    config, ids = polled
    text = watcherd(config, "alerts", ids["stuck"], env={"COLUMNS": "200"}).stdout
    assert "queued_long" in text and "open" in text and "queue depth" in text
    assert "nonfinite" not in text


def test_list_shows_alerts_and_eta_with_its_source(polled: tuple[Path, dict[str, str]]) -> None:
    """`list` has an ALERTS column; `list --json` gives alerts and the ETA's source."""
    config, ids = polled
    table = watcherd(config, "list", env={"COLUMNS": "200"}).stdout
    assert "ALERTS" in table and "nonfinite!" in table and "queued_long!" in table
    rows = {r["job_id"]: r for r in json.loads(watcherd(config, "list", "--json").stdout)}
    assert rows[ids["nan"]]["alerts"] == ["nonfinite"]
    assert rows[ids["fine"]]["alerts"] == []
    assert rows[ids["nan"]]["eta"]["source"] in ("step_rate", "first_epoch")
    assert rows[ids["fine"]]["eta"]["source"] == "service"


def test_show_and_report_hold_the_alert_history(polled: tuple[Path, dict[str, str]]) -> None:
    """`show` has an Alerts section and an ETA line; `show --json` and the report list them."""
    config, ids = polled
    text = watcherd(config, "show", ids["nan"]).stdout
    assert "Alerts" in text and "train/loss is NaN" in text and "eta" in text
    data = json.loads(watcherd(config, "show", ids["nan"], "--json").stdout)
    assert [a["rule"] for a in data["alerts"]] == ["nonfinite"]
    out = config.with_name("r.html")
    assert watcherd(config, "report", "-o", str(out)).returncode == 0
    assert "<h3>Alerts</h3>" in out.read_text() and "train/loss is NaN" in out.read_text()


def test_alerts_cancel_list_and_show_on_postgresql(tmp_path: Path, pg_url: str) -> None:
    """With `store.url`, the daemon's alerts reach `alerts`, the ALERTS column and `show`;
    `cancel` records a person's cancel in the shared database."""
    world = World(LIVE, clock=SpeedClock(1.0))
    with run_in_thread(world, api_key=API_KEY) as sim:
        config = write_config(tmp_path, sim.base_url, world.job_ids())
        config.write_text(
            config.read_text().replace("  path: watcherd.db\n", f"  url: '{pg_url}'\n")
        )
        assert start_daemon(config, "--once").wait(timeout=60) == 0
        ids = {str(world.job(j).spec.suffix): j for j in world.job_ids()}
        found = json.loads(watcherd(config, "alerts", "--json", "--open").stdout)
        table = watcherd(config, "list", env={"COLUMNS": "200"}).stdout
        shown = watcherd(config, "show", ids["nan"]).stdout
        cancelled = watcherd(config, "cancel", ids["fine"], "--yes")
        fine = json.loads(watcherd(config, "show", ids["fine"], "--json").stdout)
    assert not (tmp_path / "watcherd.db").exists()
    assert sorted((a["job_id"], a["rule"]) for a in found) == sorted(
        [(ids["nan"], "nonfinite"), (ids["stuck"], "queued_long")]
    )
    assert "ALERTS" in table and "nonfinite!" in table and "queued_long!" in table
    assert "Alerts" in shown and "train/loss is NaN" in shown
    assert cancelled.returncode == 0, cancelled.stderr
    assert fine["job"]["cancel"]["requested_by"] == "user"


def test_alerts_without_a_database_is_empty(tmp_path: Path) -> None:
    """No database yet: `alerts` says so and exits 0."""
    config = tmp_path / "w.yaml"
    config.write_text("store: {path: none.db}\n")
    done = watcherd(config, "alerts")
    assert (done.returncode, done.stdout.strip()) == (0, "no alerts yet")
