"""Commands that show what the database holds: show, metrics, report."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from watcherd.cli.common import color_enabled, emit, load_read, read, terminal_width
from watcherd.errors import UsageError, WatcherdError
from watcherd.model import MetricFilter, parse_iso_ns, validate_job_id
from watcherd.store.opening import store_exists

if TYPE_CHECKING:
    from watcherd.config import ReadConfig
    from watcherd.model import Alert
    from watcherd.spend import SpendRow
    from watcherd.store.interface import StoreReader
    from watcherd.views.records import ReportJob

# Each command imports the view it renders (charts, the report) when it runs, and
# reads through `read` (plain sqlite3 on SQLite, no event loop).


def _job_id(text: str) -> str:
    try:
        return validate_job_id(text)
    except WatcherdError as exc:
        raise UsageError(str(exc)) from exc


def metric_filter(args: argparse.Namespace) -> MetricFilter:
    """The `list_metrics` filters from the command line."""
    bounds: dict[str, int | None] = {}
    for name in ("logged_at_from", "logged_at_to"):
        text = getattr(args, name)
        try:
            bounds[name] = None if text is None else parse_iso_ns(text)
        except ValueError as exc:
            raise UsageError(f"--{name.replace('_', '-')}: {exc}") from exc
    return MetricFilter(
        global_step_from=args.global_step_from,
        global_step_to=args.global_step_to,
        logged_at_from=bounds["logged_at_from"],
        logged_at_to=bounds["logged_at_to"],
        resolution=args.resolution,
    )


def cmd_metrics(args: argparse.Namespace) -> int:
    """`watcherd metrics JOB_ID [filters] [--json]`."""
    config = load_read(args)
    job_id = _job_id(args.job_id)
    flt = metric_filter(args)
    if args.json:
        texts = _metrics_json(config, job_id, flt)
        sys.stdout.write("[\n" + ",\n".join(texts) + "\n]\n" if texts else "[]\n")
        return 0
    rows = _metrics(config, job_id, flt)
    if not rows:
        print(f"No metrics found for job {job_id}")
        return 0
    from watcherd.views.charts import render_charts

    color = color_enabled()
    emit(render_charts(rows, width=terminal_width(), color=color), color=color)
    return 0


async def _known(store: StoreReader, job_id: str) -> None:
    if await store.job(job_id) is None:
        raise UsageError(f"{job_id} is not in the database (see `watcherd list`)")


def _metrics_json(config: ReadConfig, job_id: str, flt: MetricFilter) -> list[str]:
    async def texts(store: StoreReader) -> list[str]:
        await _known(store, job_id)
        return await store.metrics_json(job_id, flt)

    return read(config, texts)


def _metrics(config: ReadConfig, job_id: str, flt: MetricFilter) -> list[dict[str, Any]]:
    async def rows(store: StoreReader) -> list[dict[str, Any]]:
        await _known(store, job_id)
        return await store.metrics(job_id, flt)

    return read(config, rows)


def cmd_events(args: argparse.Namespace) -> int:
    """`watcherd events JOB_ID [--json]`: the job's event log from the database."""
    from watcherd.views.events import events_json, render_events

    config = load_read(args)
    job_id = _job_id(args.job_id)
    events = _events(config, job_id)
    if args.json:
        print(events_json(events))
    else:
        print(render_events(job_id, events, color=color_enabled(), width=terminal_width()))
    return 0


def _events(config: ReadConfig, job_id: str) -> list[dict[str, Any]]:
    async def events(store: StoreReader) -> list[dict[str, Any]]:
        await _known(store, job_id)
        return await store.events(job_id)

    return read(config, events)


def cmd_cost(args: argparse.Namespace) -> int:
    """`watcherd cost [--since DATE] [--by day|model|job] [--json]`."""
    from watcherd.views.cost import cost_json, render_cost

    config = load_read(args)
    since = _since(args.since)
    rows = _spend(config)
    if since is not None:
        rows = [r for r in rows if r.created_at >= since]
    if args.json:
        print(json.dumps(cost_json(rows, by=args.by, since=args.since), indent=2))
    else:
        print(render_cost(rows, by=args.by, color=color_enabled(), width=terminal_width()))
    return 0


def _since(text: str | None) -> float | None:
    """Epoch seconds of `--since` (a date or date-time; no offset means UTC)."""
    if text is None:
        return None
    try:
        return parse_iso_ns(text) / 1e9
    except ValueError as exc:
        raise UsageError(f"--since: {exc}") from exc


def _spend(config: ReadConfig) -> list[SpendRow]:
    async def spend(store: StoreReader) -> list[SpendRow]:
        return await store.spend()

    return read(config, spend)


def cmd_show(args: argparse.Namespace) -> int:
    """`watcherd show JOB_ID [--json]`."""
    from watcherd.views.show import render_show, show_json

    config = load_read(args)
    job = _report_job(config, _job_id(args.job_id))
    now = time.time()
    parts = (job.overview, job.raw_job, job.transitions, job.metrics, job.deliveries)
    if args.json:
        print(
            json.dumps(show_json(*parts, now=now, events=job.events, alerts=job.alerts), indent=2)
        )
    else:
        color = color_enabled()
        width = terminal_width()
        text = render_show(
            *parts, now=now, color=color, width=width, events=job.events, alerts=job.alerts
        )
        emit(text, color=color)
    return 0


def _report_job(config: ReadConfig, job_id: str) -> ReportJob:
    return read(config, lambda store: _load_report_job(store, job_id))


async def _load_report_job(store: StoreReader, job_id: str) -> ReportJob:
    from watcherd.views.records import ReportJob

    found = await store.job(job_id)
    if found is None:
        raise UsageError(f"{job_id} is not in the database (see `watcherd list`)")
    overview, raw = found
    return ReportJob(
        overview=overview,
        raw_job=raw,
        transitions=await store.transitions(job_id),
        metrics=await store.metrics(job_id, MetricFilter(resolution=1000)),
        deliveries=await store.deliveries(job_id),
        events=await store.events(job_id),
        alerts=await store.alerts(job_id),
    )


def cmd_alerts(args: argparse.Namespace) -> int:
    """`watcherd alerts [JOB_ID...] [--open] [--json]`."""
    from watcherd.views.alerts import alerts_json, render_alerts

    config = load_read(args)
    ids = [_job_id(j) for j in args.job_ids]
    alerts = _alerts(config, ids, args.open)
    if args.json:
        print(json.dumps(alerts_json(alerts), indent=2))
    elif not alerts:
        print("no open alerts" if args.open else "no alerts yet")
    else:
        now, width = time.time(), terminal_width()
        print(render_alerts(alerts, now=now, color=color_enabled(), width=width))
    return 0


def _alerts(config: ReadConfig, ids: list[str], open_only: bool) -> list[Alert]:
    if not store_exists(config.store):  # nothing recorded yet: an empty list, not an error
        return []

    async def alerts(store: StoreReader) -> list[Alert]:
        if not ids:
            return await store.alerts(open_only=open_only)
        found = [await store.alerts(job_id, open_only=open_only) for job_id in ids]
        return sorted((a for group in found for a in group), key=lambda a: a.opened_at)

    return read(config, alerts)


def cmd_report(args: argparse.Namespace) -> int:
    """`watcherd report [JOB_ID...] -o report.html`."""
    from watcherd.views.report import render_report

    config = load_read(args)
    ids = [_job_id(j) for j in args.job_ids]
    jobs = _report_jobs(config, ids)
    write_atomically(args.output, render_report(jobs, generated_at=time.time()))
    print(f"wrote {args.output} ({len(jobs)} jobs)")
    return 0


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` with `text` all at once: a reader never sees half a file, and a
    failure leaves the old file as it was. The mode follows the umask, like any new file.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("x", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise WatcherdError(f"cannot write {path}: {exc.strerror or exc}") from None


def _report_jobs(config: ReadConfig, ids: list[str]) -> list[ReportJob]:
    async def jobs(store: StoreReader) -> list[ReportJob]:
        wanted = ids or [j.job_id for j in await store.overview()]
        return [await _load_report_job(store, job_id) for job_id in wanted]

    return read(config, jobs)
