"""Escape sequences sent by the server never reach a terminal; JSON keeps them exactly.

A hostile server puts `EVIL` (colour, a window-title OSC, a bell, a carriage return and
a newline) into every string it controls: status, model, output name, other job fields,
metric keys, an error message and a hook's output. The real daemon records it; then
each command's real output is read as a terminal would get it.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.cliharness import watcherd
from tests.daemonharness import start_daemon
from tests.hostileserver import HostileApi, answer
from watcherd.model import JobOverview, Transition
from watcherd.views.charts import render_charts
from watcherd.views.listing import render_list
from watcherd.views.show import render_show

EVIL = "\u001b[31mEVIL\u001b]0;pwned\u0007\r\nX\u009b2J\u202eZ"
#: Anything a terminal acts on: C0 (bar the newline), DEL, C1, bidi overrides.
CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
OUR_COLOURS = re.compile(r"\x1b\[[0-9;]*m")
EVIL_ID, BROKEN_ID, DONE_ID = "ft-evil", "ft-broken", "ft-done"
KEY = f"train/loss{EVIL}"


def evil_job() -> dict[str, Any]:
    """A live job with EVIL in every string field `show` prints."""
    fields = ("model", "model_output_name", "suffix", "training_file", "wandb_url", "created_at")
    return {
        "id": EVIL_ID,
        "status": EVIL,
        **dict.fromkeys(fields, EVIL),
        "training_method": {"method": EVIL},
        "training_type": {"type": EVIL},
        "n_epochs": EVIL,
        "learning_rate": 1e-5,
        "lr_scheduler": {"lr_scheduler_type": EVIL},
        "queue_depth": EVIL,
    }


def evil_rows() -> list[dict[str, Any]]:
    """Train rows under a hostile key and an eval row under another."""
    rows: list[dict[str, Any]] = [
        {"train/global_step": s, KEY: 2.0 / s, "timestamp": 10**18 + s} for s in range(1, 6)
    ]
    rows.append({"train/global_step": 5, f"eval/{EVIL}": 0.5, "timestamp": 10**18 + 9})
    return rows


def config_text(base_url: str, log_format: str) -> str:
    """A config watching the three jobs, with a hook that fails printing EVIL."""
    code = f"import sys; sys.stdin.read(); print({EVIL!r}); sys.exit(1)"
    command = json.dumps([sys.executable, "-c", code])
    return (
        f"api: {{base_url: {base_url}, api_key_env: WATCHERD_TEST_KEY, timeout: 5s}}\n"
        "store: {path: watcherd.db}\njobs: {file: jobs.txt}\n"
        f"log: {{format: {log_format}, level: info}}\n"
        f"hooks:\n  - name: probe\n    command: {command}\n"
    )


@dataclass(frozen=True, slots=True)
class Recorded:
    """The daemon's database of the hostile jobs, a config for it and the live server."""

    config: Path
    console: Path  # the same, logging in console format
    api: HostileApi


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorded]:
    """`watcherd run --once` against the hostile server: every job recorded once."""
    folder = tmp_path_factory.mktemp("terminal")
    with HostileApi.running() as api:
        api.set_job(evil_job())
        api.metrics[EVIL_ID] = answer({"metrics": evil_rows()})
        api.jobs[BROKEN_ID] = answer({"error": {"message": EVIL}}, 400)
        api.set_job({"id": DONE_ID, "status": "completed", "model": EVIL})
        (folder / "jobs.txt").write_text(f"{EVIL_ID}\n{BROKEN_ID}\n{DONE_ID}\n")
        config, console = folder / "watcherd.yaml", folder / "console.yaml"
        config.write_text(config_text(api.base_url, "json"))
        console.write_text(config_text(api.base_url, "console"))
        code = start_daemon(config, "--once").wait(timeout=60)
        assert code == 0, (folder / "daemon.log").read_text()[-3000:]
        yield Recorded(config, console, api)


TEXT_COMMANDS = [
    ("list",),
    ("list", "--all"),
    ("show", EVIL_ID),
    ("show", BROKEN_ID),
    ("show", DONE_ID),
    ("metrics", EVIL_ID),
    ("hooks",),
    ("hooks", DONE_ID),
    ("health",),
]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("args", TEXT_COMMANDS, ids=" ".join)
def test_text_output_holds_no_control_characters(recorded: Recorded, args: tuple[str, ...]) -> None:
    """Each command's table or page: EVIL's visible letters at most, never its controls."""
    proc = watcherd(recorded.config, *args, env={"COLUMNS": "200"})
    assert proc.returncode in (0, 1), proc.stderr
    assert not CONTROL.findall(proc.stdout + proc.stderr), proc.stdout
    if args[0] in ("show", "metrics") and args[1] == EVIL_ID:
        assert "EVIL" in proc.stdout


@pytest.mark.timeout(120)
def test_wait_prints_the_status_and_logs_without_controls(recorded: Recorded) -> None:
    """`wait` (polling itself, console logs) names the hostile status without its controls."""
    proc = watcherd(recorded.console, "wait", EVIL_ID, "--timeout", "1s")
    assert proc.returncode == 1
    assert "EVIL" in proc.stdout
    assert not CONTROL.findall(proc.stdout + proc.stderr), proc.stdout + proc.stderr


@pytest.mark.timeout(120)
def test_json_outputs_keep_the_strings_exactly(recorded: Recorded) -> None:
    """`--json` escapes controls as JSON does, and parsing gives back the exact strings."""
    outputs = {
        "list": watcherd(recorded.config, "list", "--json"),
        "show": watcherd(recorded.config, "show", EVIL_ID, "--json"),
        "hooks": watcherd(recorded.config, "hooks", "--json"),
        "metrics": watcherd(recorded.config, "metrics", EVIL_ID, "--json"),
        "broken": watcherd(recorded.config, "show", BROKEN_ID, "--json"),
    }
    assert not [n for n, p in outputs.items() if p.returncode or CONTROL.findall(p.stdout)]
    found = {name: json.loads(proc.stdout) for name, proc in outputs.items()}
    by_id = {job["job_id"]: job for job in found["list"]}
    assert by_id[EVIL_ID]["status"] == by_id[EVIL_ID]["model"] == EVIL
    assert found["show"]["job"]["model_output_name"] == EVIL
    assert found["show"]["fields"]["suffix"] == EVIL
    assert found["show"]["transitions"][-1]["to"] == EVIL
    assert found["hooks"][0]["output_tail"] == EVIL + "\n"
    assert found["metrics"] == evil_rows()
    assert "EVIL" in found["broken"]["job"]["last_error"]


@pytest.mark.timeout(120)
def test_report_file_holds_no_control_characters(recorded: Recorded) -> None:
    """The HTML report is escaped and free of control characters."""
    out = recorded.config.with_name("report.html")
    proc = watcherd(recorded.config, "report", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    html = out.read_text()
    assert "EVIL" in html and not CONTROL.findall(html)


def test_coloured_views_hold_only_their_own_colour_codes() -> None:
    """With colour on, the only escapes left are watcherd's SGR codes."""
    job = JobOverview(
        EVIL_ID, EVIL, True, EVIL, 1.0, 5, 1.0, 0.5, 60.0, 2.0, EVIL, EVIL, EVIL, {EVIL: 1}
    )
    pages = [
        render_list([job], now=3.0, color=True, width=200),
        render_show(job, evil_job(), [Transition(EVIL_ID, EVIL, EVIL, 1.0)], evil_rows(), [],
                    now=3.0, color=True, width=200),
        render_charts(evil_rows(), width=120, color=True),
    ]  # fmt: skip
    for page in pages:
        assert "EVIL" in page
        assert not CONTROL.findall(OUR_COLOURS.sub("", page)), page
