"""The argument parser: every command, its options and its help text."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable
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


Sub = argparse._SubParsersAction  # the type `add_subparsers` returns


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `watcherd` parser with all its subcommands; or, when `command` (what argv
    starts with) names one, with that one only: a read command builds one subparser,
    not nineteen. Help and errors read the same either way: a subcommand's usage and
    help are its own, and the top-level usage names no command."""
    parser = _Parser(
        prog="watcherd",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=_RawDescription,
    )
    parser.add_argument("--version", action="version", version=f"watcherd {__version__}")
    sub = cast(
        "Sub[argparse.ArgumentParser]",
        parser.add_subparsers(
            dest="command", metavar="COMMAND", required=True, parser_class=_Parser
        ),
    )
    if command in _COMMANDS:
        _COMMANDS[command](sub)
    else:
        for add in _COMMANDS.values():
            add(sub)
    return parser


def _config(parser: argparse.ArgumentParser, *, json: bool = False) -> argparse.ArgumentParser:
    """`--config` (every command but sim and demo) and `--json` (the listing commands)."""
    parser.add_argument("--config", type=Path, metavar="PATH", help="configuration file")
    if json:
        parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser


def _run(sub: Sub[argparse.ArgumentParser]) -> None:
    run = _config(sub.add_parser("run", help="run the daemon in the foreground"))
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


def _check_config(sub: Sub[argparse.ArgumentParser]) -> None:
    _config(
        sub.add_parser(
            "check-config", help="validate and print the effective config, secrets redacted"
        )
    )


def _migrate(sub: Sub[argparse.ArgumentParser]) -> None:
    migrate = _config(
        sub.add_parser(
            "migrate",
            help="copy the SQLite history (store.path) into PostgreSQL; run again to resume",
        )
    )
    migrate.add_argument(
        "--to",
        required=True,
        metavar="URL",
        help="postgresql://user@host:port/db (password: store.password_* or $PGPASSWORD)",
    )


def _health(sub: Sub[argparse.ArgumentParser]) -> None:
    _config(
        sub.add_parser("health", help="exit 0 if the daemon runs and polled recently, else say why")
    )


def _resume(sub: Sub[argparse.ArgumentParser]) -> None:
    _config(
        sub.add_parser(
            "resume",
            help="clear a stored Retry-After pause (a running daemon drops it on reload)",
        )
    )


def _sim(sub: Sub[argparse.ArgumentParser]) -> None:
    sim = sub.add_parser(
        "sim", help="serve the Together-compatible simulator on loopback", add_help=False
    )
    sim.add_argument("sim_args", nargs=argparse.REMAINDER, help="simulator options (sim --help)")


def _demo(sub: Sub[argparse.ArgumentParser]) -> None:
    demo = sub.add_parser("demo", help="a one-minute tour: simulator, daemon, hooks, charts")
    demo.add_argument("--keep", action="store_true", help="keep the demo's temporary folder")


def _add(sub: Sub[argparse.ArgumentParser]) -> None:
    add = _config(sub.add_parser("add", help="watch job IDs (saved to the jobs file)"))
    add.add_argument("job_ids", nargs="+", metavar="JOB_ID")
    add.add_argument("--note", help="a note shown in `list`")


def _remove(sub: Sub[argparse.ArgumentParser]) -> None:
    remove = _config(sub.add_parser("remove", help="stop watching; history stays"))
    remove.add_argument("job_ids", nargs="+", metavar="JOB_ID")


def _list(sub: Sub[argparse.ArgumentParser]) -> None:
    listed = _config(sub.add_parser("list", help="one row per watched job"), json=True)
    listed.add_argument(
        "--all",
        action="store_true",
        help="also jobs no longer watched (removed, or only waited on): their history stays",
    )


def _wait(sub: Sub[argparse.ArgumentParser]) -> None:
    wait = _config(
        sub.add_parser("wait", help="block until the jobs are terminal; exit 0 if all completed")
    )
    wait.add_argument("job_ids", nargs="+", metavar="JOB_ID")
    wait.add_argument(
        "--timeout",
        type=_positive_duration,
        metavar="DURATION",
        help="give up after this long (90, 90s, 10m, 2h) and exit 1",
    )


def _hooks(sub: Sub[argparse.ArgumentParser]) -> None:
    hooks = _config(
        sub.add_parser("hooks", help="hook deliveries; `hooks retry DELIVERY_ID` re-queues one"),
        json=True,
    )
    hooks.add_argument("args", nargs="*", metavar="JOB_ID | retry DELIVERY_ID")


def _cancel(sub: Sub[argparse.ArgumentParser]) -> None:
    cancel = _config(
        sub.add_parser(
            "cancel",
            help="cancel a job on the service (refused once it is finished or being cancelled)",
        )
    )
    cancel.add_argument("job_id", metavar="JOB_ID")
    cancel.add_argument(
        "--yes", action="store_true", help="do not ask for confirmation (needed off a terminal)"
    )


def _show(sub: Sub[argparse.ArgumentParser]) -> None:
    show = _config(sub.add_parser("show", help="one job in detail"), json=True)
    show.add_argument("job_id", metavar="JOB_ID")


def _metrics(sub: Sub[argparse.ArgumentParser]) -> None:
    metrics = _config(
        sub.add_parser(
            "metrics", help="a job's metrics from the local database, as charts or JSON"
        ),
        json=True,
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


def _alerts(sub: Sub[argparse.ArgumentParser]) -> None:
    alerts = _config(
        sub.add_parser("alerts", help="alert episodes of the jobs, oldest first"), json=True
    )
    alerts.add_argument("job_ids", nargs="*", metavar="JOB_ID")
    alerts.add_argument("--open", action="store_true", help="only the alerts still open")


def _events(sub: Sub[argparse.ArgumentParser]) -> None:
    events = _config(
        sub.add_parser(
            "events",
            help="a job's event log from the local database (why it ended, checkpoints)",
        ),
        json=True,
    )
    events.add_argument("job_id", metavar="JOB_ID")


def _cost(sub: Sub[argparse.ArgumentParser]) -> None:
    cost = _config(
        sub.add_parser(
            "cost",
            help="what the jobs cost, from stored prices (running jobs at their last price)",
        ),
        json=True,
    )
    cost.add_argument(
        "--since",
        metavar="DATE",
        help="only jobs created at or after DATE (2026-05-01, or a time; UTC if no offset)",
    )
    cost.add_argument(
        "--by", choices=("day", "model", "job"), default="day", help="group by (default: day)"
    )


def _report(sub: Sub[argparse.ArgumentParser]) -> None:
    report = _config(sub.add_parser("report", help="a self-contained HTML page of the jobs"))
    report.add_argument("job_ids", nargs="*", metavar="JOB_ID")
    report.add_argument("-o", "--output", type=Path, default=Path("report.html"), metavar="FILE")


#: Every subcommand's builder, in the order `watcherd --help` lists them.
_COMMANDS: dict[str, Callable[[Sub[argparse.ArgumentParser]], None]] = {
    "run": _run,
    "check-config": _check_config,
    "migrate": _migrate,
    "health": _health,
    "resume": _resume,
    "sim": _sim,
    "demo": _demo,
    "add": _add,
    "remove": _remove,
    "list": _list,
    "wait": _wait,
    "hooks": _hooks,
    "cancel": _cancel,
    "show": _show,
    "metrics": _metrics,
    "alerts": _alerts,
    "events": _events,
    "cost": _cost,
    "report": _report,
}
