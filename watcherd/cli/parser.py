"""The argument parser: every command, its options and its help text."""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Any, cast

from watcherd import __version__

DESCRIPTION = """\
watcherd watches Together AI fine-tuning jobs: it polls them, records every status
change and metric in a local SQLite database, and fires hooks when they finish.
"""
EPILOG = """\
exit codes: 0 ok, 1 runtime failure, 2 usage error, 78 configuration error.
config: --config, else $WATCHERD_CONFIG, else /etc/watcherd/config.yaml if it exists,
else ./watcherd.yaml (defaults when that file does not exist).
"""


def terminal_columns(fallback: int) -> int:
    """`shutil.get_terminal_size().columns`, without importing shutil (and lzma, bz2...).

    COLUMNS wins, then the terminal on stdout, then `fallback`.
    """
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return int(columns)
    try:
        width = os.get_terminal_size(sys.__stdout__.fileno()).columns if sys.__stdout__ else 0
    except (AttributeError, ValueError, OSError):
        width = 0
    return width or fallback


class _Width(argparse.HelpFormatter):
    """argparse's own width rule; argparse would import shutil for it in every parser."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:  # fmt: skip
        width = terminal_columns(80) - 2 if width is None else width
        super().__init__(prog, indent_increment, max_help_position, width)


class _RawDescription(_Width, argparse.RawDescriptionHelpFormatter):
    """The top-level help: descriptions as written."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose help formatter does not import shutil."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _Width)
        super().__init__(*args, **kwargs)
        # Python 3.13's rule: `--timeout -5m` is the option's (refused) value, like -5,
        # not an unknown option leaving --timeout "expected one argument".
        self._negative_number_matcher = re.compile(r"-\.?\d")


def _common() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--config", type=Path, metavar="PATH", help="configuration file")
    return common


def _listing() -> argparse.ArgumentParser:
    listing = _Parser(add_help=False)
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return listing


def _int_at_least(low: int) -> type[int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    return parse  # type: ignore[return-value]


def _positive_duration(text: str) -> float:
    """`90`, `90s`, `10m`, `1h30m`: seconds, more than zero; one message for the rest."""
    from watcherd.durations import MAX_SECONDS, TOO_LONG, parse_duration

    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        if str(exc) == TOO_LONG:
            limit = f"{MAX_SECONDS:,.0f} seconds (about 31 years)"
            raise argparse.ArgumentTypeError(f"must be at most {limit}, got {text!r}") from None
        seconds = 0.0
    if seconds <= 0:
        raise argparse.ArgumentTypeError(
            f"must be a positive duration (like 90, 90s, 10m, 2h), got {text!r}"
        )
    return seconds


def build_parser() -> argparse.ArgumentParser:
    """The `watcherd` parser with all its subcommands."""
    parser = _Parser(
        prog="watcherd",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=_RawDescription,
    )
    parser.add_argument("--version", action="version", version=f"watcherd {__version__}")
    sub = cast(
        "argparse._SubParsersAction[argparse.ArgumentParser]",
        parser.add_subparsers(
            dest="command", metavar="COMMAND", required=True, parser_class=_Parser
        ),
    )
    common, listing = _common(), _listing()
    _add_daemon_commands(sub, common)
    _add_job_commands(sub, common, listing)
    _add_view_commands(sub, common, listing)
    return parser


def _add_daemon_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser
) -> None:
    run = sub.add_parser("run", parents=[common], help="run the daemon in the foreground")
    mode = run.add_mutually_exclusive_group()
    mode.add_argument(
        "--once",
        action="store_true",
        help="poll every job once, deliver due hooks, exit (for cron): 1 if the API key "
        "was refused or no job could be polled",
    )
    mode.add_argument(
        "--until-done",
        action="store_true",
        help="exit once every job is terminal and its hooks are delivered",
    )
    sub.add_parser(
        "check-config",
        parents=[common],
        help="validate and print the effective config, secrets redacted",
    )
    migrate = sub.add_parser(
        "migrate",
        parents=[common],
        help="copy the SQLite history (store.path) into PostgreSQL; run again to resume",
    )
    migrate.add_argument(
        "--to",
        required=True,
        metavar="URL",
        help="postgresql://user@host:port/db (password: store.password_* or $PGPASSWORD)",
    )
    sub.add_parser(
        "health",
        parents=[common],
        help="exit 0 if the daemon runs and polled recently, else say why",
    )
    sub.add_parser(
        "resume",
        parents=[common],
        help="clear a stored Retry-After pause (a running daemon drops it on reload)",
    )
    sim = sub.add_parser(
        "sim", help="serve the Together-compatible simulator on loopback", add_help=False
    )
    sim.add_argument("sim_args", nargs=argparse.REMAINDER, help="simulator options (sim --help)")
    demo = sub.add_parser("demo", help="a one-minute tour: simulator, daemon, hooks, charts")
    demo.add_argument("--keep", action="store_true", help="keep the demo's temporary folder")


def _add_job_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
    listing: argparse.ArgumentParser,
) -> None:
    add = sub.add_parser("add", parents=[common], help="watch job IDs (saved to the jobs file)")
    add.add_argument("job_ids", nargs="+", metavar="JOB_ID")
    add.add_argument("--note", help="a note shown in `list`")
    remove = sub.add_parser("remove", parents=[common], help="stop watching; history stays")
    remove.add_argument("job_ids", nargs="+", metavar="JOB_ID")
    listed = sub.add_parser("list", parents=[common, listing], help="one row per watched job")
    listed.add_argument(
        "--all",
        action="store_true",
        help="also jobs no longer watched (removed, or only waited on): their history stays",
    )
    wait = sub.add_parser(
        "wait", parents=[common], help="block until the jobs are terminal; exit 0 if all completed"
    )
    wait.add_argument("job_ids", nargs="+", metavar="JOB_ID")
    wait.add_argument(
        "--timeout",
        type=_positive_duration,
        metavar="DURATION",
        help="give up after this long (90, 90s, 10m, 2h) and exit 1",
    )
    hooks = sub.add_parser(
        "hooks",
        parents=[common, listing],
        help="hook deliveries; `hooks retry DELIVERY_ID` re-queues one",
    )
    hooks.add_argument("args", nargs="*", metavar="JOB_ID | retry DELIVERY_ID")
    cancel = sub.add_parser(
        "cancel",
        parents=[common],
        help="cancel a job on the service (refused once it is finished or being cancelled)",
    )
    cancel.add_argument("job_id", metavar="JOB_ID")
    cancel.add_argument(
        "--yes", action="store_true", help="do not ask for confirmation (needed off a terminal)"
    )


def _add_view_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
    listing: argparse.ArgumentParser,
) -> None:
    show = sub.add_parser("show", parents=[common, listing], help="one job in detail")
    show.add_argument("job_id", metavar="JOB_ID")
    metrics = sub.add_parser(
        "metrics",
        parents=[common, listing],
        help="a job's metrics from the local database, as charts or JSON",
    )
    metrics.add_argument("job_id", metavar="JOB_ID")
    metrics.add_argument(
        "--global-step-from",
        type=_int_at_least(0),
        metavar="N",
        help="rows at step N or later (inclusive)",
    )
    metrics.add_argument(
        "--global-step-to",
        type=_int_at_least(0),
        metavar="N",
        help="rows at step N or earlier (inclusive)",
    )
    metrics.add_argument(
        "--logged-at-from",
        metavar="ISO8601",
        help="rows logged at or after this time (offset allowed; none = UTC)",
    )
    metrics.add_argument(
        "--logged-at-to", metavar="ISO8601", help="rows logged at or before this time"
    )
    metrics.add_argument(
        "--resolution",
        type=_int_at_least(1),
        metavar="N",
        help="uniform sample of N train rows; eval rows always in full",
    )
    alerts = sub.add_parser(
        "alerts", parents=[common, listing], help="alert episodes of the jobs, oldest first"
    )
    alerts.add_argument("job_ids", nargs="*", metavar="JOB_ID")
    alerts.add_argument("--open", action="store_true", help="only the alerts still open")
    _add_spend_commands(sub, common, listing)


def _add_spend_commands(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
    listing: argparse.ArgumentParser,
) -> None:
    """`events`, `cost` and `report`: why jobs ended and what they cost."""
    events = sub.add_parser(
        "events",
        parents=[common, listing],
        help="a job's event log from the local database (why it ended, checkpoints)",
    )
    events.add_argument("job_id", metavar="JOB_ID")
    cost = sub.add_parser(
        "cost",
        parents=[common, listing],
        help="what the jobs cost, from stored prices (running jobs at their last price)",
    )
    cost.add_argument(
        "--since",
        metavar="DATE",
        help="only jobs created at or after DATE (2026-05-01, or a time; UTC if no offset)",
    )
    cost.add_argument(
        "--by", choices=("day", "model", "job"), default="day", help="group by (default: day)"
    )
    report = sub.add_parser(
        "report", parents=[common], help="a self-contained HTML page of the jobs"
    )
    report.add_argument("job_ids", nargs="*", metavar="JOB_ID")
    report.add_argument("-o", "--output", type=Path, default=Path("report.html"), metavar="FILE")
