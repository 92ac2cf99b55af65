"""A raw HTTP/1.1 server on loopback for the transport tests: the handler sees the bytes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def listening(handler: Handler) -> AsyncIterator[int]:
    """`handler` serving each connection on a free loopback port; yields the port."""
    listener = await asyncio.start_server(handler, "127.0.0.1", 0)
    async with listener:
        yield listener.sockets[0].getsockname()[1]
