"""A small HTTP/1.1 receiver on loopback for webhook and notification tests.

It answers from a script (`Answer`s, in order; then 200), records every request,
and checks Standard Webhooks signatures with its own reference code, written
from the specification rather than imported from watcherd.
"""

from __future__ import annotations

import base64
import hmac
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import anyio.abc
from anyio.abc import SocketAttribute
from anyio.streams.buffered import BufferedByteReceiveStream

REASONS = {200: "OK", 302: "Found", 410: "Gone", 429: "Too Many Requests", 500: "Error"}


@dataclass(frozen=True, slots=True)
class Answer:
    """One scripted response; `drip` sends the body one byte per that many seconds."""

    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b"ok"
    drip: float | None = None


@dataclass(frozen=True, slots=True)
class Received:
    """One request as it arrived (header names lower-cased)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)


def reference_signature(secret: str, msg_id: str, timestamp: str, body: bytes) -> str:
    """Standard Webhooks v1: base64 HMAC-SHA256 over `id.timestamp.body`."""
    key = base64.b64decode(secret[6:]) if secret.startswith("whsec_") else secret.encode()
    mac = hmac.new(key, msg_id.encode() + b"." + timestamp.encode() + b"." + body, "sha256")
    return "v1," + base64.b64encode(mac.digest()).decode()


class Receiver:
    """The receiver's state: its port, the scripted answers and what it received."""

    def __init__(self, port: int, secret: str | None) -> None:
        self.port = port
        self.secret = secret
        self.answers: list[Answer] = []
        self.requests: list[Received] = []

    def url(self, path: str = "/hook") -> str:
        """The loopback URL of `path` on this receiver."""
        return f"http://127.0.0.1:{self.port}{path}"

    def script(self, *answers: Answer) -> None:
        """Queue answers for the next requests, in order."""
        self.answers.extend(answers)

    def verify(self, request: Received) -> bool:
        """True if one of the request's `v1,` signatures matches the reference algorithm."""
        assert self.secret is not None
        headers = request.headers
        expected = reference_signature(
            self.secret, headers["webhook-id"], headers["webhook-timestamp"], request.body
        )
        offered = headers.get("webhook-signature", "").split()
        return any(hmac.compare_digest(sig, expected) for sig in offered)

    async def handle(self, stream: anyio.abc.ByteStream) -> None:
        """Serve one request on a connection, then close it."""
        async with stream:
            try:
                self.requests.append(await _read_request(stream))
                answer = self.answers.pop(0) if self.answers else Answer()
                await _write_answer(stream, answer)
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.IncompleteRead):
                return


async def _read_request(stream: anyio.abc.ByteStream) -> Received:
    buffered = BufferedByteReceiveStream(stream)
    head = (await buffered.receive_until(b"\r\n\r\n", 65536)).decode("latin-1")
    request_line, *lines = head.split("\r\n")
    method, path, _ = request_line.split(" ", 2)
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = await buffered.receive_exactly(length) if length else b""
    return Received(method, path, headers, body)


async def _write_answer(stream: anyio.abc.ByteStream, answer: Answer) -> None:
    reason = REASONS.get(answer.status, "Whatever")
    lines = [f"HTTP/1.1 {answer.status} {reason}", f"content-length: {len(answer.body)}"]
    lines += ["connection: close", *(f"{k}: {v}" for k, v in answer.headers)]
    await stream.send(("\r\n".join(lines) + "\r\n\r\n").encode())
    if answer.drip is None:
        await stream.send(answer.body)
        return
    for i in range(len(answer.body)):
        await stream.send(answer.body[i : i + 1])
        await anyio.sleep(answer.drip)


@asynccontextmanager
async def webhook_receiver(secret: str | None = None) -> AsyncIterator[Receiver]:
    """Serve a Receiver on 127.0.0.1 (a free port) for the duration of the block."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    receiver = Receiver(listener.extra(SocketAttribute.local_port), secret)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, receiver.handle)
        try:
            yield receiver
        finally:
            tg.cancel_scope.cancel()
