"""`watcherd report`: one self-contained HTML page of jobs, timelines and loss curves.

No script, no external resource, inline CSS with a print stylesheet, charts as inline
SVG. Everything that came from the remote API or the user is escaped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from html import escape
from typing import Final

from watcherd.model import (
    PHASES,
    Alert,
    Delivery,
    JobOverview,
    is_settled,
    phases,
    spans,
)
from watcherd.views import _svg
from watcherd.views._fields import job_fields
from watcherd.views._fmt import duration, number, terminal_text
from watcherd.views._series import Series, collect_series
from watcherd.views.alerts import cancel_text, eta_text
from watcherd.views.listing import iso
from watcherd.views.records import ReportJob as ReportJob

_SCHEME: Final = re.compile(r"\b[a-z][a-z0-9+.-]*://", re.IGNORECASE)
_REWARD_PARTS: Final = ("chosen", "rejected", "margins")

CSS: Final = """
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:60rem;color:#1b1f24}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2.5rem;border-bottom:1px solid #ccd}
table{border-collapse:collapse;margin:.5rem 0}td,th{padding:.15rem .6rem;text-align:left}
th{font-weight:600;border-bottom:1px solid #ccd}code{font-size:.9em}
.status-completed{color:#2f9e44}.status-live{color:#b7791f}.status-failed{color:#c92a2a}
.chart{width:100%;max-width:40rem;height:auto;display:block;margin:.75rem 0}
.chart .axis{stroke:#555;fill:none}.chart .grid{stroke:#e3e6ea;fill:none}
.chart .series{fill:none;stroke-width:1.5}.chart .nan{fill:#c92a2a}
.chart text{font-size:11px;fill:#333}.chart .title{font-weight:600}
dl{display:grid;grid-template-columns:max-content auto;gap:.1rem 1rem}dd{margin:0}
@media print{body{margin:0;max-width:none;font-size:11px}section{break-inside:avoid}
h2{break-after:avoid}.chart{max-width:100%}}
"""


def render_report(jobs: Sequence[ReportJob], *, generated_at: float) -> str:
    """The whole HTML page."""
    body = [
        f"<h1>watcherd report</h1>\n<p>Generated {_e(iso(generated_at))}, {len(jobs)} job(s).</p>",
        _summary(jobs),
        *(_job_section(job, generated_at) for job in jobs),
    ]
    page = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>watcherd report</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )
    return terminal_text(page, color=False)  # no server control character in the file


def _e(value: object) -> str:
    """Escaped text, with URL schemes cut so the page references nothing outside it."""
    return escape(_SCHEME.sub("", "" if value is None else str(value)))


def _status(status: str | None) -> str:
    """A status in a span coloured by class."""
    kind = {"completed": "completed", None: "live"}.get(status)
    if kind is None:
        kind = "failed" if is_settled(status) else "live"
    return f'<span class="status-{kind}">{_e(status or "never polled")}</span>'


def _summary(jobs: Sequence[ReportJob]) -> str:
    """The overview table: one row per job."""
    head = _head("Job", "Note", "Status", "Step", "Train loss", "Eval loss", "Open alerts")
    rows = [
        f'<tr><td><a href="#{_anchor(j.overview.job_id)}">{_e(j.overview.job_id)}</a></td>'
        f"<td>{_e(j.overview.note or '')}</td><td>{_status(j.overview.status)}</td>"
        f"<td>{_e(j.overview.step if j.overview.step is not None else '-')}</td>"
        f"<td>{_e(number(j.overview.train_loss))}</td><td>{_e(number(j.overview.eval_loss))}</td>"
        f"<td>{_e(', '.join(j.overview.alerts) or '-')}</td></tr>"
        for j in jobs
    ]
    return "<table>\n" + "\n".join([head, *rows]) + "\n</table>"


def _head(*names: str) -> str:
    """A table header row."""
    return "<tr>" + "".join(f"<th>{escape(n)}</th>" for n in names) + "</tr>"


def _anchor(job_id: str) -> str:
    """An id attribute value derived from the job id (escaped)."""
    return escape("job-" + re.sub(r"[^A-Za-z0-9_-]", "_", job_id))


def _job_section(job: ReportJob, now: float) -> str:
    """One job: heading, fields, timeline, charts and hook deliveries."""
    ov = job.overview
    pairs = [*job_fields(job.raw_job, ov), *_progress(ov, now)]
    fields = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in pairs)
    parts = [
        f'<section id="{_anchor(ov.job_id)}">',
        f"<h2>{_e(ov.job_id)} — {_status(ov.status)}</h2>",
        f"<p>{_e(ov.note)}</p>" if ov.note else "",
        f'<p class="reason">Reason: {_e(ov.reason)}</p>' if ov.reason else "",
        f"<dl>{fields}</dl>" if fields else "",
        _timeline(job, now),
        *_charts(collect_series(job.metrics)),
        _alerts(job.alerts),
        _deliveries(job.deliveries),
        "</section>",
    ]
    return "\n".join(p for p in parts if p)


def _timeline(job: ReportJob, now: float) -> str:
    """The transitions table and the phase totals."""
    if not job.transitions:
        return "<p>No transitions recorded.</p>"
    ordered = sorted(job.transitions, key=lambda t: t.observed_at)
    rows = [
        f"<tr><td>{_e(iso(t.observed_at))}</td><td>{_e(t.from_status or '')}</td>"
        f"<td>{_status(t.to_status)}</td><td>{_e(duration(s) if s is not None else '')}</td></tr>"
        for t, s in zip(ordered, spans(ordered, job.overview.status, now), strict=True)
    ]
    head = _head("At (UTC)", "From", "To", "Lasted")
    totals = phases(ordered, job.overview.status, now)
    names = [name for name, _ in PHASES] + ["total"]
    shown = [
        f"{n} {duration(totals[n.replace(' ', '_')])}"
        for n in names
        if totals[n.replace(" ", "_")] is not None
    ]
    table = "<table>\n" + "\n".join([head, *rows]) + "\n</table>"
    return f"<h3>Timeline</h3>\n{table}\n<p>{_e(' · '.join(shown))}</p>"


def chart_groups(series: Sequence[Series]) -> list[tuple[str, list[Series]]]:
    """The report's charts: loss (train and eval), DPO rewards, KL; only those present."""
    by_key = {s.key: s for s in series}
    loss = [by_key[k] for k in ("train/loss", "eval/loss") if k in by_key]
    rewards = [
        by_key[f"train/rewards/{p}"] for p in _REWARD_PARTS if f"train/rewards/{p}" in by_key
    ]
    kl = [s for s in series if s.key.rsplit("/", 1)[-1] == "kl"]
    groups = [("Loss", loss), ("DPO rewards", rewards), ("KL divergence", kl)]
    return [(title, members) for title, members in groups if members]


def _charts(series: Sequence[Series]) -> list[str]:
    """One SVG per chart group."""
    out = []
    for title, members in chart_groups(series):
        svg = _svg.chart(title, [_svg.Line(s.key, s.xs, s.ys) for s in members])
        if svg:
            out.append(svg)
    return out


def _progress(ov: JobOverview, now: float) -> list[tuple[str, str]]:
    """The ETA (with its source) of a live job, and who cancelled it, if anyone."""
    pairs = []
    eta = None if ov.status is None or is_settled(ov.status) else eta_text(ov, now)
    if eta:
        pairs.append(("eta", eta))
    cancel = cancel_text(ov.cancel)
    if cancel:
        pairs.append(("cancel", cancel))
    return pairs


def _alerts(alerts: Sequence[Alert]) -> str:
    """The job's alert history as a table, or nothing."""
    if not alerts:
        return ""
    head = _head("Opened (UTC)", "Rule", "Episode", "State", "Message")
    rows = [
        f"<tr><td>{_e(iso(a.opened_at))}</td><td>{_e(a.rule)}</td><td>{a.episode:d}</td>"
        f"<td>{'open' if a.resolved_at is None else 'resolved ' + _e(iso(a.resolved_at))}</td>"
        f"<td>{_e(a.details.get('message') or '')}</td></tr>"
        for a in alerts
    ]
    return "<h3>Alerts</h3>\n<table>\n" + "\n".join([head, *rows]) + "\n</table>"


def _deliveries(deliveries: Sequence[Delivery]) -> str:
    """The job's hook deliveries as a table, or nothing."""
    if not deliveries:
        return ""
    head = _head("Hook", "Event", "State", "Attempts", "Last error")
    rows = [
        f"<tr><td>{_e(d.hook)}</td><td>{_e(d.event)}</td><td>{_e(d.state)}</td>"
        f"<td>{d.attempts:d}</td><td>{_e(d.last_error or '')}</td></tr>"
        for d in deliveries
    ]
    return "<h3>Hooks</h3>\n<table>\n" + "\n".join([head, *rows]) + "\n</table>"
