"""structlog set-up: console lines on a terminal, JSON lines otherwise, secrets redacted.

Every record, ours and the standard library's (httpx, aiosqlite), goes through one
stdlib handler whose formatter runs the structlog processors, so both kinds look
the same. Calling `configure_logging` again (SIGHUP reload) replaces the handler.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, Final, Protocol, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger


class LogSettings(Protocol):
    """What logging needs of the config (`watcherd.config.LogConfig` fits)."""

    @property
    def format(self) -> str: ...  # auto, console or json

    @property
    def level(self) -> str: ...  # debug, info, warning or error


REDACTED: Final = "[REDACTED]"
#: Fields whose whole value is replaced, whatever it holds (compared lower-case).
SENSITIVE_KEYS: Final = frozenset(
    {"authorization", "api_key", "apikey", "x-api-key", "token", "secret", "password", "cookie"}
)
_AUTH_VALUE = re.compile(
    r"""(?i)(authorization["']?\s*[:=]\s*["']?)(?:(?:bearer|basic|token)\s+)?[^\s"',;}]+"""
)
_BEARER = re.compile(r"(?i)\b(bearer)\s+[^\s\"',;}]+")
_NOISY: Final = ("httpx", "httpcore")
#: Control, bidi and line-separator characters, as the escapes `repr` writes for them.
_UNSAFE: Final = (
    *range(32),
    *range(127, 160),
    0x200E,
    0x200F,
    *range(0x202A, 0x202F),
    *range(0x2066, 0x206A),
    0x2028,
    0x2029,
)
_ESCAPE: Final = {c: repr(chr(c))[1:-1] for c in _UNSAFE}
_ESCAPE_MULTILINE: Final = {c: e for c, e in _ESCAPE.items() if c != 0x0A}


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Our handler on the root logger, recognisable so a reconfigure can replace it."""


def configure_logging(cfg: LogSettings, *, stream: TextIO | None = None) -> None:
    """Send all logging to `stream` (default stderr) as `cfg` says; safe to call again."""
    out = sys.stderr if stream is None else stream
    level = logging.getLevelNamesMapping()[cfg.level.upper()]
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    handler = _Handler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                redact_fields,
                *_renderer(cfg, out),
                redact_text,
            ],
        )
    )
    _install(handler, level)


def _renderer(cfg: LogSettings, out: TextIO) -> list[Processor]:
    """Console renderer on a terminal (or when asked), JSON otherwise."""
    tty = _isatty(out)
    if cfg.format == "console" or (cfg.format == "auto" and tty):
        return [
            printable_values,
            structlog.dev.ConsoleRenderer(
                colors=tty, exception_formatter=structlog.dev.plain_traceback
            ),
        ]
    return [structlog.processors.format_exc_info, structlog.processors.JSONRenderer(default=str)]


def _install(handler: logging.Handler, level: int) -> None:
    """Put `handler` on the root logger in place of any earlier one of ours."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in _NOISY:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))


def _isatty(stream: TextIO) -> bool:
    """True if `stream` is a terminal (False for anything that cannot tell)."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def redact_fields(_logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
    """Blank sensitive fields and scrub `Bearer ...` out of string values."""
    return dict(_scrub(event))


def _scrub(mapping: Mapping[str, Any], depth: int = 0) -> MutableMapping[str, Any]:
    """A copy of `mapping` with sensitive values redacted (nested mappings too)."""
    clean: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(key, str) and key.lower() in SENSITIVE_KEYS:
            clean[key] = REDACTED
        elif isinstance(value, str):
            clean[key] = redact(value)
        elif isinstance(value, Mapping) and depth < 4:
            clean[key] = _scrub(value, depth + 1)
        else:
            clean[key] = value
    return clean


def printable_values(_logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
    """Console lines only: control characters in values (a status the server sent with
    escape sequences) are written as `\\x1b`-style escapes, so they cannot drive the
    terminal; a traceback keeps its newlines. JSON lines escape them already.
    """
    for key, value in event.items():
        if isinstance(value, str):
            table = _ESCAPE_MULTILINE if key in ("exception", "stack") else _ESCAPE
            event[key] = value.translate(table)
    return event


def redact_text(_logger: WrappedLogger, _method: str, rendered: Any) -> Any:
    """Last line of defence: scrub the rendered line itself."""
    return redact(rendered) if isinstance(rendered, str) else rendered


def redact(text: str) -> str:
    """`text` with Authorization values and bearer tokens replaced by [REDACTED]."""
    text = _AUTH_VALUE.sub(lambda m: m.group(1) + REDACTED, text)
    return _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
