"""The result rows, the printed table and `bench/results.json`."""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HEADERS = ("figure", "watcherd", "baseline", "ratio", "target", "pass")


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the table; `extra` holds the detail that goes only into the JSON."""

    figure: str
    watcherd: float
    baseline: float | None
    target: str
    passed: bool | None
    unit: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        """watcherd / baseline, when there is a baseline."""
        if self.baseline is None or self.baseline == 0:
            return None
        return self.watcherd / self.baseline


def _num(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    text = f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return f"{text} {unit}".strip()


def _cells(row: Row) -> tuple[str, ...]:
    verdict = "-" if row.passed is None else ("yes" if row.passed else "NO")
    ratio = "-" if row.ratio is None else f"{row.ratio:.2f}x"
    return (
        row.figure,
        _num(row.watcherd, row.unit),
        _num(row.baseline, row.unit),
        ratio,
        row.target,
        verdict,
    )


def render(rows: list[Row]) -> str:
    """The table as aligned text."""
    lines = [HEADERS, *(_cells(r) for r in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADERS))]
    out = ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(s.rstrip() for s in out)


def write_json(rows: list[Row], path: Path, options: dict[str, Any]) -> None:
    """Every row with its detail, plus when and how the run was made."""
    doc = {
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "options": options,
        "rows": [asdict(r) | {"ratio": r.ratio} for r in rows],
    }
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
