"""httpcore's network streams, with the pool's per-request socket check made cheap.

Before each request and after each response httpcore's pool asks every idle
connection whether its socket is readable (a server that closed it). Its stream
answers through anyio's `extra()`, which builds a dict of every attribute, calling
`getpeername()` (a system call) each time, then makes a fresh `select.poll`: about
17 of each per request at 8 connections. `LeanBackend` wraps httpcore's own anyio
backend and keeps, per connection, the raw socket and one registered poll object,
so the check is one `poll(0)` system call. Everything else is passed through.

httpx offers no public way to hand its transports a network backend (and a transport
passed in would turn off the proxies from the environment); `use_lean_backend` sets
the `_network_backend` of the pools httpx built (httpx 0.28, httpcore 1.x: pyproject
pins the range; tests/test_api_netstream.py checks it is used). A pool laid out
otherwise keeps httpcore's backend: slower, nothing else.
"""

from __future__ import annotations

import select
import socket
import ssl
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

#: httpcore's socket option shape.
SocketOption = (
    tuple[int, int, int] | tuple[int, int, bytes | bytearray] | tuple[int, int, None, int]
)


class LeanStream(httpcore.AsyncNetworkStream):
    """One connection's stream: httpcore's, with `is_readable` answered by one poll."""

    __slots__ = ("_inner", "_poll", "_sock")

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._sock: socket.socket | None = inner.get_extra_info("socket")
        self._poll = select.poll()
        if self._sock is not None and self._sock.fileno() >= 0:
            self._poll.register(self._sock.fileno(), select.POLLIN)

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        """Up to `max_bytes` bytes."""
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Send all of `buffer`."""
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        """Close the connection."""
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
    ) -> httpcore.AsyncNetworkStream:
        """The TLS stream over this one (the same socket underneath)."""
        return LeanStream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        """As httpcore's stream answers, `is_readable` by one `poll(0)`."""
        if info == "is_readable":
            sock = self._sock
            if sock is None or sock.fileno() < 0:
                return True  # gone: as httpcore treats it (the next read returns b"")
            return bool(self._poll.poll(0))
        return self._inner.get_extra_info(info)


class LeanBackend(httpcore.AsyncNetworkBackend):
    """httpcore's anyio backend, its streams wrapped in `LeanStream`."""

    def __init__(self) -> None:
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """A TCP connection."""
        inner = await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return LeanStream(inner)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[SocketOption] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        """A Unix-socket connection."""
        return LeanStream(await self._inner.connect_unix_socket(path, timeout, socket_options))

    async def sleep(self, seconds: float) -> None:
        """Sleep as the anyio backend does."""
        await self._inner.sleep(seconds)


def use_lean_backend(client: httpx.AsyncClient) -> int:
    """Put the pools of `client`'s transports (its own and any proxy's) on `LeanBackend`;
    returns how many. A pool laid out otherwise (another httpx) keeps its backend."""
    done = 0
    for transport in [client._transport, *client._mounts.values()]:  # private: see above
        pool = getattr(transport, "_pool", None)
        if pool is not None and hasattr(pool, "_network_backend"):
            pool._network_backend = LeanBackend()
            done += 1
    return done
