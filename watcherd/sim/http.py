"""Just enough HTTP/1.1 for the simulator: parse a request, frame a response head."""

from __future__ import annotations

import email.utils
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from anyio.streams.buffered import BufferedByteReceiveStream

from watcherd.model import dumps_exact

MAX_HEAD = 64 * 1024
MAX_BODY = 16 * 2**20


class HttpError(Exception):
    """A request we cannot parse; the connection is closed."""


@dataclass(frozen=True, slots=True)
class Request:
    """One parsed request."""

    method: str
    path: str
    query: str
    version: str
    headers: dict[str, str]
    body: bytes

    @property
    def keep_alive(self) -> bool:
        """True unless the client asked to close (or speaks HTTP/1.0 without keep-alive)."""
        conn = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return conn == "keep-alive"
        return conn != "close"


@dataclass(frozen=True, slots=True)
class Reply:
    """A response before it is framed: status, headers, body bytes."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str = "application/json"


def json_reply(status: int, payload: Any, headers: tuple[tuple[str, str], ...] = ()) -> Reply:
    """A JSON reply (integers exact, NaN written literally)."""
    return Reply(status, dumps_exact(payload).encode(), headers)


def error_reply(
    status: int, message: str, kind: str = "invalid_request_error", param: str | None = None
) -> Reply:
    """The ErrorData envelope: {"error": {message, type, param, code}}."""
    error = {"message": message, "type": kind, "param": param, "code": None}
    return json_reply(status, {"error": error})


async def read_request(buffered: BufferedByteReceiveStream) -> Request:
    """Read one request (head and Content-Length body) from the stream."""
    head = await buffered.receive_until(b"\r\n\r\n", MAX_HEAD)
    lines = head.decode("latin-1").split("\r\n")
    try:
        method, target, version = lines[0].split(" ", 2)
    except ValueError:
        raise HttpError(f"bad request line {lines[0]!r}") from None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError:
        raise HttpError("bad Content-Length") from None
    if length < 0 or length > MAX_BODY or "chunked" in headers.get("transfer-encoding", ""):
        raise HttpError("unsupported request body")
    body = await buffered.receive_exactly(length) if length else b""
    path, _, query = target.partition("?")
    return Request(method.upper(), path, query, version, headers, body)


def head_bytes(reply: Reply, length: int, keep_alive: bool) -> bytes:
    """Status line and headers for `reply` with this Content-Length."""
    try:
        reason = HTTPStatus(reply.status).phrase
    except ValueError:
        reason = "Unknown"
    lines = [
        f"HTTP/1.1 {reply.status} {reason}",
        f"Content-Type: {reply.content_type}",
        f"Content-Length: {length}",
        f"Date: {email.utils.formatdate(usegmt=True)}",
        "Server: watcherd-sim",
        f"Connection: {'keep-alive' if keep_alive else 'close'}",
        *(f"{name}: {value}" for name, value in reply.headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
