"""`watcherd demo`: a newcomer's first minute.

In a temporary folder it starts the simulator with five jobs (an SFT LoRA job and a
DPO job that complete, one whose loss turns NaN, one cancelled, one still queued at
the end), runs the real daemon against it with a command hook and cancel armed for
NaN and diverging losses, shows a live status view that refreshes in place, then the
alert and the early stop it caused, the hook's output and the finished jobs' loss
charts.
Nothing is left running: the simulator and the daemon live in this process.
"""

from __future__ import annotations

import os
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import TextIO

import anyio

from watcherd.cli.common import color_enabled, terminal_width
from watcherd.config import Config, load_config
from watcherd.daemon import Mode, run_daemon
from watcherd.jobsfile import add_jobs
from watcherd.logs import configure_logging
from watcherd.model import SETTLED_DELIVERIES, JobOverview, is_settled
from watcherd.sim import World, demo_scenario_path, serve
from watcherd.store import Store
from watcherd.systemd import Notifier
from watcherd.views.charts import render_charts
from watcherd.views.listing import render_list

#: The demo gives up waiting after this many seconds, whatever the jobs do.
DEMO_LIMIT = 50.0
#: The step at which the demo's diverging job would fail if nothing stopped it.
ERRORS_AT = 80
API_KEY_ENV = "WATCHERD_DEMO_API_KEY"

HOOK_SCRIPT = '''\
"""The demo's hook: reads the JSON payload on stdin, appends one line to hooks.log."""
import json, os, sys
event = json.load(sys.stdin)
m = event["metrics"]
if event["alert"]:
    a = event["alert"]
    line = (f"{os.environ['WATCHERD_DELIVERY_ID']}: {a['rule']} {a['state']} "
            f"({a['action']}): {a['message']}")
else:
    line = (f"{os.environ['WATCHERD_DELIVERY_ID']}: {event['job_id']} is {event['status']} "
            f"(was {event['previous_status']}), last step {m['last_step']}, "
            f"best train loss {m['best_train_loss']}, best eval loss {m['best_eval_loss']}")
with open("hooks.log", "a") as out:
    out.write(line + "\\n")
print(line)
'''


def write_files(folder: Path, base_url: str) -> Path:
    """The demo's config, hook script and empty jobs file; returns the config path."""
    (folder / "announce.py").write_text(HOOK_SCRIPT)
    config = folder / "watcherd.yaml"
    config.write_text(
        textwrap.dedent(f"""\
        api:
          base_url: {base_url}
          api_key_env: {API_KEY_ENV}
          max_rate: 50
        store:
          path: watcherd.db
        jobs:
          file: jobs.txt
        poll:
          interval: 1s
          min_interval: 0.5s
          metrics_interval: 1s
          max_backoff: 10s
        hooks:
          - name: announce
            on: [completed, error, cancelled, user_error, alert.*]
            command: ["{sys.executable}", "announce.py"]
            cwd: .
            timeout: 10s
        allow_cancel: true
        alerts:
          nonfinite: {{action: cancel}}
          diverging: {{action: cancel}}
        log:
          format: json
          level: info
        """)
    )
    return config


def run_demo(*, keep: bool = False, out: TextIO = sys.stdout) -> int:
    """Run the demo; 0 when every job reached the state the scenario gives it."""
    with tempfile.TemporaryDirectory(prefix="watcherd-demo-") as tmp:
        code = anyio.run(_demo, Path(tmp), out, backend="asyncio")
        if keep:
            kept = Path(tempfile.mkdtemp(prefix="watcherd-demo-kept-"))
            for path in Path(tmp).iterdir():
                path.replace(kept / path.name)
            print(f"\nThe demo's files are kept in {kept}", file=out)
        return code


async def _demo(folder: Path, out: TextIO) -> int:
    world = World(demo_scenario_path())
    os.environ[API_KEY_ENV] = "demo-key"
    print("watcherd demo: a simulated Together AI service with five fine-tuning jobs,", file=out)
    print(
        "watched by the real daemon. (Logs go to watcherd.log in a temporary folder.)\n", file=out
    )
    async with serve(world) as sim:
        config_path = write_files(folder, sim.base_url)
        config = load_config(config_path)
        assert config.jobs.file is not None
        notes = {j: world.job(j).spec.suffix for j in world.job_ids()}
        for job_id in world.job_ids():
            add_jobs(config.jobs.file, [job_id], note=notes[job_id])
        with (folder / "watcherd.log").open("w") as log_stream:
            configure_logging(config.log, stream=log_stream)
            jobs = await _run_daemon_with_view(config_path, config, out)
    await _epilogue(folder, config, jobs, out)
    return 0 if _expected(jobs) else 1


async def _run_daemon_with_view(
    config_path: Path, config: Config, out: TextIO
) -> list[JobOverview]:
    notifier = Notifier.from_environment({})
    jobs: list[JobOverview] = []
    async with anyio.create_task_group() as tg:
        tg.start_soon(run_daemon, config_path, config, notifier, Mode.FOREVER)
        view = LiveView(out)
        deadline = time.monotonic() + DEMO_LIMIT
        while time.monotonic() < deadline:
            await anyio.sleep(0.5)
            if not config.store.path.exists():
                continue
            async with Store.open(config.store.path, writer=False) as store:
                jobs = await store.overview()
            view.draw(jobs)
            if jobs and _finished(jobs):
                break
        tg.cancel_scope.cancel()
    return jobs


def _finished(jobs: list[JobOverview]) -> bool:
    """Every job settled except the one that stays queued, and no hook still pending."""
    live = [j for j in jobs if not is_settled(j.status)]
    hooks = [(state, n) for j in jobs for state, n in j.hooks.items()]
    pending = sum(n for state, n in hooks if state not in SETTLED_DELIVERIES)
    return len(live) <= 1 and all(j.status == "queued" for j in live) and pending == 0


def _expected(jobs: list[JobOverview]) -> bool:
    statuses = sorted(j.status or "-" for j in jobs)
    return statuses == ["cancelled", "cancelled", "completed", "completed", "queued"]


class LiveView:
    """Redraws the job table in place on a terminal; prints changes otherwise."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self.lines = 0
        self.last = ""

    def draw(self, jobs: list[JobOverview]) -> None:
        text = render_list(
            jobs,
            now=time.time(),
            color=self.tty and color_enabled(self.out),
            width=terminal_width(),
        )
        if text == self.last:
            return
        self.last = text
        if self.tty and self.lines:
            self.out.write(f"\x1b[{self.lines}F\x1b[J")
        elif not self.tty:
            self.out.write("\n")
        self.out.write(text + "\n")
        self.out.flush()
        self.lines = text.count("\n") + 1


async def _epilogue(folder: Path, config: Config, jobs: list[JobOverview], out: TextIO) -> None:
    await _early_stop(config, jobs, out)
    hooks_log = folder / "hooks.log"
    print(
        "\nThe `announce` hook fired once per finished job and per alert (payload on stdin):",
        file=out,
    )
    for line in hooks_log.read_text().splitlines() if hooks_log.exists() else ["(none)"]:
        print(f"  {line}", file=out)
    await _charts(config, jobs, out)
    print(
        textwrap.dedent("""
        Next: watch your own jobs.
          export TOGETHER_API_KEY=...        # your key
          watcherd add ft-...                # saved in ./jobs.txt
          watcherd run                       # the daemon; `watcherd list` in another shell
        Or play with the simulator: `watcherd sim` (see README.md).
        """),
        file=out,
    )


async def _early_stop(config: Config, jobs: list[JobOverview], out: TextIO) -> None:
    """The alerts, and what the armed cancel saved on the job whose loss turned NaN."""
    async with Store.open(config.store.path, writer=False) as store:
        alerts = await store.alerts()
        cancels = await store.cancels()
    print("\nAlerts (watcherd alerts):", file=out)
    for alert in alerts or []:
        note = next((j.note for j in jobs if j.job_id == alert.job_id), "")
        print(f"  {alert.job_id} ({note}): {alert.rule}: {alert.details.get('message')}", file=out)
    if not alerts:
        print("  (none)", file=out)
    for job_id, record in cancels.items():
        job = next((j for j in jobs if j.job_id == job_id), None)
        if job is None or record.requested_by != "watcherd":
            continue
        print(
            f"\nCancel armed: watcherd cancelled {job_id} ({job.note}) at step {job.step},"
            f" because {record.reason}. Left alone it would have trained to step"
            f" {ERRORS_AT} and then failed: {ERRORS_AT - (job.step or 0)} GPU steps saved.",
            file=out,
        )


async def _charts(config: Config, jobs: list[JobOverview], out: TextIO) -> None:
    async with Store.open(config.store.path, writer=False) as store:
        for job in jobs:
            if job.status != "completed":
                continue
            rows = await store.metrics(job.job_id)
            print(f"\n{job.job_id} ({job.note}): {len(rows)} metric rows", file=out)
            print(
                render_charts(rows, width=min(terminal_width(), 110), color=color_enabled(out)),
                file=out,
            )
