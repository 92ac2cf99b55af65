"""What a job's page shows (`show`, `report`), gathered from the store in one record.

Apart from `report` (the HTML renderer), so that `watcherd show` does not import it.
"""

# No `from __future__ import annotations`: see `watcherd.model` (named tuples).

from collections.abc import Sequence
from typing import Any, NamedTuple

from watcherd.model import Alert, Delivery, JobOverview, MetricRow, Transition


class ReportJob(NamedTuple):
    """Everything the report shows about one job."""

    overview: JobOverview
    raw_job: dict[str, Any] | None = None
    transitions: Sequence[Transition] = ()
    metrics: Sequence[MetricRow] = ()
    deliveries: Sequence[Delivery] = ()
    events: Sequence[dict[str, Any]] = ()
    alerts: Sequence[Alert] = ()
