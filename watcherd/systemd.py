"""A dependency-free sd_notify, inert outside systemd.

`Notifier.from_environment()` reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and
`WATCHDOG_PID` and removes them from the environment, so no child process (a hook)
ever sees them. Messages go out on a non-blocking AF_UNIX datagram socket; a failed
send is logged and otherwise ignored: telling systemd is never worth dying for.

Reload protocol: `reloading()` sends `RELOADING=1` with `MONOTONIC_USEC=` (what
systemd 253+ `Type=notify-reload` expects; older versions show it as state), and
the caller sends `ready()` once the new config is in place.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import MutableMapping
from types import TracebackType
from typing import Final

import structlog

log = structlog.get_logger(__name__)

ENV_VARS: Final = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


class Notifier:
    """Sends sd_notify messages to systemd; every method is a no-op when not under it."""

    def __init__(self, address: str | None = None, watchdog_usec: int | None = None) -> None:
        """`address` is a socket path or `@abstract` name; None makes an inert notifier."""
        self._address = _socket_address(address) if address else None
        self._watchdog_usec = watchdog_usec if watchdog_usec and watchdog_usec > 0 else None
        self._sock: socket.socket | None = None
        if self._address is not None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sock.setblocking(False)

    @classmethod
    def from_environment(cls, environ: MutableMapping[str, str] | None = None) -> Notifier:
        """A notifier for `environ` (default os.environ), whose systemd variables it removes."""
        env = os.environ if environ is None else environ
        address = env.pop("NOTIFY_SOCKET", None)
        usec, pid = env.pop("WATCHDOG_USEC", None), env.pop("WATCHDOG_PID", None)
        watchdog = None
        if usec and usec.isdigit() and (not pid or pid == str(os.getpid())):
            watchdog = int(usec)
        if address is not None and not address.startswith(("/", "@")):
            log.warning("systemd.notify_unsupported", address=address)
            address = None
        return cls(address, watchdog)

    @property
    def enabled(self) -> bool:
        """True when messages actually go to systemd."""
        return self._sock is not None

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between watchdog pings (half of WatchdogSec=), None if not wanted."""
        return None if self._watchdog_usec is None else self._watchdog_usec / 2_000_000

    def ready(self, status: str | None = None) -> None:
        """Startup (or a reload) is complete."""
        self.notify("READY=1", *([] if status is None else [_status(status)]))

    def status(self, text: str) -> None:
        """Set the one-line status shown by `systemctl status`."""
        self.notify(_status(text))

    def reloading(self) -> None:
        """A reload has begun; call `ready()` when it is done."""
        self.notify("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")

    def stopping(self) -> None:
        """A graceful stop has begun."""
        self.notify("STOPPING=1")

    def watchdog(self) -> None:
        """Tell the watchdog the service is alive (call only while making progress)."""
        if self._watchdog_usec is not None:
            self.notify("WATCHDOG=1")

    def notify(self, *assignments: str) -> None:
        """Send `KEY=value` lines as one datagram; errors are logged, never raised."""
        if self._sock is None or self._address is None:
            return
        try:
            self._sock.sendto("\n".join(assignments).encode(), self._address)
        except OSError as exc:
            log.warning("systemd.notify_failed", error=str(exc), message=assignments[0])

    def close(self) -> None:
        """Close the socket; the notifier is inert afterwards."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> Notifier:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _socket_address(address: str) -> str:
    """The address for sendto: an abstract `@name` becomes a leading NUL."""
    return "\0" + address[1:] if address.startswith("@") else address


def _status(text: str) -> str:
    """A `STATUS=` line: one line, printable (`systemctl status` shows it on a terminal)."""
    printable = "".join(ch if ch.isprintable() else " " for ch in text)
    return "STATUS=" + " ".join(printable.split())
