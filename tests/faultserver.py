"""A tiny programmable HTTP/1.1 server on loopback, for testing the API client's defences.

Each connection carries one request (`Connection: close`). The reply is the next one in
the queue (`push`), or `default` when the queue is empty. A reply can stall before
answering, drip its body slowly, cut the connection mid-body with a TCP reset, lie
about or omit its Content-Length. The server records every request it saw, with the
wall-clock time it arrived, and the highest number of requests in flight at once.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import socket
import struct
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc

JSON = (("content-type", "application/json"),)
REASONS = {200: "OK", 429: "Too Many Requests", 500: "Internal Server Error"}


@dataclass(frozen=True, slots=True)
class Reply:
    """One programmed response and the fault to inject with it."""

    status: int = 200
    body: bytes = b"{}"
    headers: tuple[tuple[str, str], ...] = JSON
    stall: float = 0.0  # seconds before the status line is sent
    drip: float = 0.0  # seconds between body chunks
    chunk: int = 0  # chunk size when dripping; 0 sends the body at once
    cut_after: int | None = None  # reset the connection after this many body bytes
    content_length: int | None = None  # override; -1 leaves the header out


@dataclass(frozen=True, slots=True)
class Seen:
    """A request as the server received it."""

    at: float  # wall-clock epoch seconds
    method: str
    target: str
    headers: dict[str, str] = field(repr=False)


def json_reply(obj: Any, status: int = 200, **kwargs: Any) -> Reply:
    """A JSON reply (NaN and Infinity written literally)."""
    return Reply(status=status, body=json.dumps(obj).encode(), **kwargs)


def gzip_bomb(size: int) -> Reply:
    """A small gzip body that inflates to `size` bytes of JSON-ish text."""
    headers = (*JSON, ("content-encoding", "gzip"))
    return Reply(body=gzip.compress(b" " * size, compresslevel=9), headers=headers)


class FaultServer:
    """The server; use `async with FaultServer.running() as server`."""

    def __init__(self, port: int, default: Reply) -> None:
        self.port = port
        self.default = default
        self.seen: list[Seen] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._queue: deque[Reply] = deque()

    @property
    def url(self) -> str:
        """The base URL, e.g. `http://127.0.0.1:41234`."""
        return f"http://127.0.0.1:{self.port}"

    def push(self, *replies: Reply) -> None:
        """Queue replies for the next requests, in order."""
        self._queue.extend(replies)

    @classmethod
    @contextlib.asynccontextmanager
    async def running(cls, default: Reply | None = None) -> AsyncIterator[FaultServer]:
        """Serve on an ephemeral loopback port until the block ends."""
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        server = cls(port, default or Reply())
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, server._handle)
            try:
                yield server
            finally:
                tg.cancel_scope.cancel()

    async def _handle(self, stream: anyio.abc.SocketStream) -> None:
        faults = (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, OSError)
        async with stream:
            with contextlib.suppress(*faults):
                head = await _read_head(stream)
                self._arrived(head)
                reply = self._queue.popleft() if self._queue else self.default
                released = False

                def release() -> None:
                    nonlocal released
                    if not released:
                        released = True
                        self.in_flight -= 1

                try:
                    await _respond(stream, reply, release)
                finally:
                    release()

    def _arrived(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        pairs = (line.split(": ", 1) for line in lines[1:] if ": " in line)
        headers = {name.lower(): value for name, value in pairs}
        self.seen.append(Seen(time.time(), method, target, headers))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)


async def _respond(
    stream: anyio.abc.SocketStream, reply: Reply, release: Callable[[], None]
) -> None:
    """Send `reply`; `release` runs just before the last byte, so in-flight never lags."""
    await anyio.sleep(reply.stall)
    await stream.send(_status_and_headers(reply))
    body = reply.body if reply.cut_after is None else reply.body[: reply.cut_after]
    size = reply.chunk or max(len(body), 1)
    pieces = [body[i : i + size] for i in range(0, len(body), size)] or [b""]
    for index, piece in enumerate(pieces):
        if index:
            await anyio.sleep(reply.drip)
        if index == len(pieces) - 1 and reply.cut_after is None:
            release()
        if piece:
            await stream.send(piece)
    if reply.cut_after is not None:
        _reset(stream)


async def _read_head(stream: anyio.abc.SocketStream) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += await stream.receive()
    head, _, _ = data.partition(b"\r\n\r\n")
    return head


def _status_and_headers(reply: Reply) -> bytes:
    length = len(reply.body) if reply.content_length is None else reply.content_length
    lines = [f"HTTP/1.1 {reply.status} {REASONS.get(reply.status, 'Status')}"]
    lines += [f"{name}: {value}" for name, value in reply.headers]
    if length >= 0:
        lines.append(f"content-length: {length}")
    lines.append("connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _reset(stream: anyio.abc.SocketStream) -> None:
    """Make the coming close a TCP reset (SO_LINGER with a zero timeout)."""
    raw = stream.extra(anyio.abc.SocketAttribute.raw_socket)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
