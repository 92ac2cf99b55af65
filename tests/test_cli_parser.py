"""A parser built for the one command argv names reads argv as the whole parser does."""

from __future__ import annotations

import argparse
import contextlib
import io

import pytest

from watcherd.cli.parser import _COMMANDS, build_parser

#: Every command with its options, abbreviated options, and the `=` form.
GOOD = [
    ["list"],
    ["list", "--json", "--all", "--config", "w.yaml"],
    ["list", "--conf=w.yaml", "--js"],
    ["show", "ft-a", "--json"],
    ["metrics", "ft-a", "--resolution", "5", "--global-step-from", "3", "--logged-at-to", "x"],
    ["hooks"],
    ["hooks", "retry", "ft-a:completed:pager"],
    ["alerts", "ft-a", "ft-b", "--open"],
    ["events", "ft-a"],
    ["cost", "--by", "model", "--since", "2026-05-01"],
    ["health"],
    ["report", "ft-a", "-o", "r.html"],
    ["run", "--once"],
    ["run", "--until-done", "--config", "w.yaml"],
    ["wait", "ft-a", "ft-b", "--timeout", "10m"],
    ["add", "ft-a", "--note", "a note"],
    ["remove", "ft-a"],
    ["cancel", "ft-a", "--yes"],
    ["migrate", "--to", "postgresql://u@h/db"],
    ["check-config"],
    ["resume"],
    ["demo", "--keep"],
    ["sim"],
]
#: Help, and the mistakes argparse answers with a usage line and exit code 2.
BAD = [
    *([command, "--help"] for command in _COMMANDS),
    ["--help"],
    ["--version"],
    [],
    ["bogus"],
    ["list", "--bogus"],
    ["list", "extra"],
    ["metrics"],
    ["metrics", "ft-a", "--resolution", "0"],
    ["cost", "--by", "week"],
    ["wait", "ft-a", "--timeout", "0"],
    ["run", "--once", "--until-done"],
    ["migrate"],
]


@pytest.mark.parametrize("argv", GOOD, ids=" ".join)
def test_the_one_subparser_reads_argv_as_the_whole_parser(argv: list[str]) -> None:
    """Same namespace from the parser of `argv[0]` alone as from every subcommand's."""
    assert build_parser(argv[0]).parse_args(argv) == build_parser().parse_args(argv)


def _outcome(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[object, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            parser.parse_args(argv)
        except SystemExit as exc:
            return exc.code, out.getvalue(), err.getvalue()
    return None, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("argv", BAD, ids=" ".join)
def test_help_and_usage_errors_read_the_same(
    argv: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--help` pages, usage errors and exit codes are the whole parser's, to the byte."""
    monkeypatch.setenv("COLUMNS", "80")
    first = argv[0] if argv else None
    whole = _outcome(build_parser(), argv)
    assert whole[0] in (0, 2)
    assert _outcome(build_parser(first), argv) == whole
