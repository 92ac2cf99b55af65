"""Logging set-up: JSON off a terminal, console on one, level filter and redaction."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from watcherd.config import LogConfig
from watcherd.logs import configure_logging, redact


class _Terminal(io.StringIO):
    """A text stream that claims to be a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Put the root logger and structlog back as they were."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.reset_defaults()


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    """The JSON objects written to `stream`."""
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_off_a_terminal() -> None:
    """format auto on a non-terminal writes one JSON object a line with ISO UTC time."""
    stream = io.StringIO()
    configure_logging(LogConfig(), stream=stream)
    structlog.get_logger("t").info("poll.completed", job_id="ft-a", jobs=3)
    (line,) = _lines(stream)
    assert line["event"] == "poll.completed" and line["level"] == "info"
    assert line["job_id"] == "ft-a" and line["jobs"] == 3
    assert str(line["timestamp"]).endswith("Z")


def test_console_on_a_terminal() -> None:
    """format auto on a terminal writes console lines, not JSON."""
    stream = _Terminal()
    configure_logging(LogConfig(), stream=stream)
    structlog.get_logger("t").info("poll.completed", job_id="ft-a")
    text = stream.getvalue()
    assert "poll.completed" in text and "ft-a" in text and not text.startswith("{")


def test_level_filter_and_noisy_libraries() -> None:
    """Events below the level are dropped; httpx INFO lines are dropped even at debug."""
    stream = io.StringIO()
    configure_logging(LogConfig(level="debug", format="json"), stream=stream)
    logging.getLogger("httpx").info("HTTP Request: GET ...")
    logging.getLogger("aiosqlite").debug("kept")
    structlog.get_logger("t").debug("also.kept")
    assert [line["event"] for line in _lines(stream)] == ["kept", "also.kept"]


def test_redacts_bearer_tokens_and_authorization() -> None:
    """Bearer tokens and Authorization values never reach the output."""
    stream = io.StringIO()
    configure_logging(LogConfig(format="json"), stream=stream)
    log = structlog.get_logger("t")
    log.warning("api.request", headers={"Authorization": "Bearer sk-1"}, api_key="sk-2")
    log.warning("api.error", detail="sent Authorization: Bearer sk-3 and bearer sk-4")
    logging.getLogger("httpx").warning("retry with Bearer sk-5")
    text = stream.getvalue()
    assert all(f"sk-{i}" not in text for i in range(1, 6)), text
    assert text.count("[REDACTED]") == 5


def test_redact_function() -> None:
    """redact() keeps the words around a secret."""
    assert redact("x Authorization=abc y") == "x Authorization=[REDACTED] y"
    assert redact('{"h": "Bearer abc.def"}') == '{"h": "Bearer [REDACTED]"}'


def test_reconfigure_replaces_handler_and_level() -> None:
    """A second call (SIGHUP reload) swaps format and level without doubling output."""
    first, second = io.StringIO(), io.StringIO()
    log = structlog.get_logger("t")
    configure_logging(LogConfig(level="info", format="json"), stream=first)
    configure_logging(LogConfig(level="error", format="json"), stream=second)
    log.warning("dropped")
    log.error("kept")
    assert first.getvalue() == ""
    assert [line["event"] for line in _lines(second)] == ["kept"]
