"""The API's httpx client on LeanBackend: connections kept alive, closed ones not reused."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import pytest

from tests.loopback import listening
from watcherd.api.client import ApiClient
from watcherd.api.netstream import LeanBackend
from watcherd.config import ApiConfig

pytestmark = pytest.mark.anyio

BODY = b'{"ok": true}'
RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (
    len(BODY),
    BODY,
)


@dataclass
class Server:
    """A keep-alive HTTP/1.1 server on loopback; `close_after` answers per connection."""

    close_after: int
    connections: int = 0
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer requests; close (without saying so) after `close_after` of them."""
        self.connections += 1
        for _ in range(self.close_after):
            try:
                await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            writer.write(RESPONSE)
            await writer.drain()
        writer.close()
        await writer.wait_closed()
        self.closed.set()


@asynccontextmanager
async def running(close_after: int) -> AsyncIterator[Server]:
    """The server, listening on a free loopback port."""
    server = Server(close_after)
    async with listening(server.serve) as server.port:
        yield server


def _pool_backends(http: object) -> list[object]:
    """The network backends of the client's pools (what `http_client` set)."""
    pools = [getattr(t, "_pool", None) for t in [http._transport, *http._mounts.values()]]  # type: ignore[attr-defined]
    return [getattr(p, "_network_backend", None) for p in pools if p is not None]


async def test_the_api_client_keeps_one_connection_alive() -> None:
    """Requests one after another reuse one connection, through LeanBackend."""
    async with running(close_after=100) as server, ApiClient.http_client(ApiConfig()) as http:
        assert any(isinstance(b, LeanBackend) for b in _pool_backends(http))
        for _ in range(3):
            reply = await http.get(f"http://127.0.0.1:{server.port}/v1/fine-tunes")
            assert reply.content == BODY
    assert server.connections == 1


async def test_a_connection_the_server_closed_while_idle_is_not_reused() -> None:
    """The idle check sees the server's close: the next request opens a new connection."""
    async with running(close_after=1) as server, ApiClient.http_client(ApiConfig()) as http:
        url = f"http://127.0.0.1:{server.port}/v1/fine-tunes"
        assert (await http.get(url)).content == BODY
        with anyio.fail_after(5):
            await server.closed.wait()
        assert (await http.get(url)).content == BODY
    assert server.connections == 2
