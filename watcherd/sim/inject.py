"""Carrying out injected faults on one response."""

from __future__ import annotations

import email.utils
import itertools
import math
import random
import socket
import struct
import time

import anyio
from anyio.abc import SocketAttribute, SocketStream

from watcherd.sim.faults import FaultSpec
from watcherd.sim.http import Reply, error_reply, head_bytes

#: Kinds that replace the service's reply by another, well-formed one.
REPLACING = frozenset({"429", "500", "503", "html", "html502"})
_HTML = (
    "<!DOCTYPE html><html><head><title>{code} {title}</title></head><body>"
    "<center><h1>{code} {title}</h1></center><hr><center>nginx</center></body></html>"
)


def _seconds(value: float) -> str:
    return str(int(value)) if value == int(value) else repr(value)


class Injector:
    """Builds fault replies; cycles 429s through the three Retry-After forms."""

    def __init__(self, spec: FaultSpec) -> None:
        self.spec = spec
        self._forms = itertools.cycle(("seconds", "date", "ms"))
        self._rng = random.Random(spec.seed)

    def replace(self, kind: str) -> tuple[Reply, float | None]:
        """The reply for a replacing kind and, for 429/503, the retry deadline."""
        now, wait = time.time(), self._wait()
        if kind == "429":
            form = next(self._forms)
            if form == "date":
                until = float(math.ceil(now + wait))
                header = ("Retry-After", email.utils.formatdate(until, usegmt=True))
                return self._with(429, "Rate limit exceeded", header), until
            if form == "ms":
                header = ("retry-after-ms", str(round(wait * 1000)))
                return self._with(429, "Rate limit exceeded", header), now + wait
            return self._with(
                429, "Rate limit exceeded", ("Retry-After", _seconds(wait))
            ), now + wait
        if kind == "503":
            header = ("Retry-After", _seconds(wait))
            return self._with(503, "The server is overloaded", header), now + wait
        if kind == "500":
            return error_reply(500, "Internal server error", "server_error"), None
        code, title = (502, "Bad Gateway") if kind == "html502" else (200, "Service Error")
        page = _HTML.format(code=code, title=title).encode()
        return Reply(code, page, content_type="text/html; charset=utf-8"), None

    def _wait(self) -> float:
        """Seconds to ask a client to wait: fixed, or drawn (whole ms) up to retry_after_max."""
        low, high = self.spec.retry_after, self.spec.retry_after_max
        if high is None or high <= low:
            return low
        return round(self._rng.uniform(low, high), 3)

    @staticmethod
    def _with(status: int, message: str, header: tuple[str, str]) -> Reply:
        reply = error_reply(
            status, message, "rate_limit_exceeded" if status == 429 else "server_error"
        )
        return Reply(reply.status, reply.body, (header,))

    async def deliver(self, kind: str, stream: SocketStream, reply: Reply, keep: bool) -> bool:
        """Send `reply` damaged as `kind`; True if the connection stays usable."""
        body = reply.body
        if kind == "stall":
            await anyio.sleep(self.spec.stall_seconds)
            return False
        if kind == "truncated":
            cut = body[: max(1, len(body) // 2)]
            await stream.send(head_bytes(reply, len(cut), keep) + cut)
            return keep
        if kind == "reset":
            await stream.send(head_bytes(reply, len(body), False) + body[: len(body) // 2])
            _abort(stream)
            return False
        if kind == "drip":
            await stream.send(head_bytes(reply, len(body), keep))
            await self._drip(stream, body)
            return keep
        return await self._oversized(stream, reply, keep)

    async def _drip(self, stream: SocketStream, body: bytes) -> None:
        size = max(3, math.ceil(len(body) / 200))
        chunks = [body[i : i + size] for i in range(0, len(body), size)]
        pause = self.spec.drip_seconds / max(len(chunks), 1)
        for chunk in chunks:
            await anyio.sleep(pause)
            await stream.send(chunk)

    async def _oversized(self, stream: SocketStream, reply: Reply, keep: bool) -> bool:
        total = max(self.spec.oversize_bytes, len(reply.body))
        await stream.send(head_bytes(reply, total, keep) + reply.body)
        left, block = total - len(reply.body), b" " * 2**20
        while left > 0:
            await stream.send(block[: min(left, len(block))])
            left -= len(block)
        return keep


def _abort(stream: SocketStream) -> None:
    """Make the coming close a TCP reset (SO_LINGER 0)."""
    sock = stream.extra(SocketAttribute.raw_socket)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
