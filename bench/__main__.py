"""`python -m bench [--quick] [--only NAME]`: measure, print the table, write results.json."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import alerts, cliquery, economy, incremental, ingest, polling, startup
from bench.table import Row, render, write_json

RESULTS = Path(__file__).with_name("results.json")


@dataclass(frozen=True, slots=True)
class Sizes:
    """Workload sizes for one mode."""

    poll_jobs: tuple[int, ...]
    poll_rounds: int
    repeats: int
    ingest_steps: int
    day_jobs: int
    day_seconds: float
    incremental_steps: int
    list_jobs: int
    history_steps: int  # per job, 5 jobs, for the start-up figure
    alert_jobs: int
    alert_day: float


FULL = Sizes((1_000, 10_000), 2, 3, 200_000, 100, 86_400.0, 10_000, 1_000, 200_000, 100, 86_400.0)
QUICK = Sizes((200,), 1, 1, 20_000, 10, 3 * 3600.0, 500, 100, 20_000, 12, 4 * 3600.0)


def figures(s: Sizes) -> dict[str, Callable[[], list[Row]]]:
    """The figures by name, each a thunk producing its rows."""
    return {
        "poll": lambda: polling.figure(list(s.poll_jobs), s.poll_rounds, s.repeats),
        "ingest": lambda: ingest.figure(s.ingest_steps, s.repeats),
        "economy": lambda: economy.figure(s.day_jobs, s.day_seconds),
        "alerts": lambda: alerts.figure(s.alert_jobs, s.alert_day),
        "incremental": lambda: incremental.figure(s.incremental_steps),
        "cli": lambda: cliquery.figure(s.ingest_steps, s.list_jobs, max(3, s.repeats + 2)),
        "startup": lambda: startup.figure(s.history_steps, s.repeats),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen figures; exit 0 even when targets are missed (it is a report)."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small workloads (about a minute)")
    parser.add_argument("--only", action="append", metavar="NAME", help="run only this figure")
    parser.add_argument("--output", type=Path, default=RESULTS, help="results JSON path")
    parser.add_argument(
        "--poll-jobs", type=int, action="append", metavar="N", help="poll figure sizes"
    )
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.poll_jobs:
        sizes = dataclasses.replace(sizes, poll_jobs=tuple(args.poll_jobs))
    table = figures(sizes)
    chosen = args.only or list(table)
    unknown = [n for n in chosen if n not in table]
    if unknown:
        parser.error(f"unknown figure(s) {unknown}; choose from {sorted(table)}")
    rows: list[Row] = []
    timings: dict[str, float] = {}
    for name in chosen:
        start = time.perf_counter()
        rows.extend(table[name]())
        timings[name] = round(time.perf_counter() - start, 1)
        print(f"bench: {name} done in {timings[name]} s", file=sys.stderr, flush=True)
    print(render(rows))
    options = {"quick": args.quick, "only": chosen, "seconds": timings}
    write_json(rows, args.output, options)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
