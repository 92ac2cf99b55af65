"""The simulator's HTTP/1.1 server on anyio TCP listeners, and ways to run it.

async with serve(world, faults="429=0.1", api_key="k") as sim:
    ...  # sim.base_url is "http://127.0.0.1:PORT"; the API is under /v1

with run_in_thread(world) as sim:  # its own event loop in a background thread
    Together(base_url=sim.base_url, api_key="x").fine_tuning.list()
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import anyio
from anyio.abc import SocketAttribute, SocketStream
from anyio.from_thread import start_blocking_portal
from anyio.streams.buffered import BufferedByteReceiveStream

from watcherd.sim.faults import FaultDraw, FaultSpec, parse_faults
from watcherd.sim.http import HttpError, Reply, Request, error_reply, head_bytes, read_request
from watcherd.sim.inject import REPLACING, Injector
from watcherd.sim.routes import route
from watcherd.sim.stats import RequestRecord, SimStats
from watcherd.sim.world import World

_DROPPED = (
    anyio.EndOfStream,
    anyio.IncompleteRead,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.DelimiterNotFound,
    HttpError,
    OSError,
)


class SimServer:
    """A running simulator: its address, world, faults and stats."""

    def __init__(self, world: World, faults: FaultSpec, api_key: str | None) -> None:
        self.world = world
        self.api_key = api_key
        self.stats = SimStats()
        self.host = "127.0.0.1"
        self.port = 0
        self.set_faults(faults)

    @property
    def base_url(self) -> str:
        """`http://HOST:PORT`, without /v1 (what SDK 3.x and watcherd expect)."""
        return f"http://{self.host}:{self.port}"

    def set_faults(self, faults: FaultSpec | str | None) -> None:
        """Change the fault plan (takes effect from the next request)."""
        spec = faults if isinstance(faults, FaultSpec) else parse_faults(faults)
        self.faults = spec
        self._injector = Injector(spec)
        seed = self.world.seed if spec.seed is None else spec.seed
        self._draw = FaultDraw(spec, random.Random(seed))

    def _authorized(self, req: Request) -> bool:
        scheme, _, token = req.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return False
        return self.api_key is None or token.strip() == self.api_key

    async def handle(self, stream: SocketStream) -> None:
        """Serve one connection until the client or a fault closes it."""
        buffered = BufferedByteReceiveStream(stream)
        try:
            while await self._one(stream, await read_request(buffered)):
                pass
        except _DROPPED:
            pass
        finally:
            await stream.aclose()

    async def _one(self, stream: SocketStream, req: Request) -> bool:
        """Serve one request; True if the connection stays open.

        A whole reply is logged just before its bytes go out (so a client that has
        read it always finds it in the stats); a damaged one once it is done.
        """
        start = time.time()
        self.stats.started()
        kind, retry_at, ok = None, None, self._authorized(req)
        reply = error_reply(401, "Invalid API key provided", "invalid_api_key")
        logged = False

        def log(status: int | None) -> None:
            nonlocal logged
            logged = True
            self.stats.finished(
                RequestRecord(
                    start, req.method, req.path, req.query, status, kind, retry_at,
                    time.time() - start, ok,
                )
            )  # fmt: skip

        try:
            if ok:
                kind = self._draw.next()
                reply, retry_at = self._reply(req, kind)
            if kind is None or kind in REPLACING:
                log(reply.status)
                await stream.send(head_bytes(reply, len(reply.body), req.keep_alive) + reply.body)
                return req.keep_alive
            return await self._injector.deliver(kind, stream, reply, req.keep_alive)
        finally:
            if not logged:
                log(None if kind == "stall" else reply.status)

    def _reply(self, req: Request, kind: str | None) -> tuple[Reply, float | None]:
        if kind in REPLACING:
            return self._injector.replace(kind)
        try:
            return route(self.world, req), None
        except Exception as exc:  # a bug in the sim: answer 500 rather than hang up
            return error_reply(500, f"simulator error: {exc!r}", "server_error"), None


@asynccontextmanager
async def serve(
    world: World,
    host: str = "127.0.0.1",
    port: int = 0,
    faults: FaultSpec | str | None = None,
    api_key: str | None = None,
) -> AsyncIterator[SimServer]:
    """Serve `world` on host:port (0 picks a free port) for the duration of the block."""
    server = SimServer(
        world, faults if isinstance(faults, FaultSpec) else parse_faults(faults), api_key
    )
    listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
    server.host = host
    server.port = listener.extra(SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, server.handle)
        try:
            yield server
        finally:
            tg.cancel_scope.cancel()


@contextmanager
def run_in_thread(
    world: World,
    host: str = "127.0.0.1",
    port: int = 0,
    faults: FaultSpec | str | None = None,
    api_key: str | None = None,
) -> Iterator[SimServer]:
    """`serve` on its own event loop in a background thread, for sync code."""
    with (
        start_blocking_portal(backend="asyncio") as portal,
        portal.wrap_async_context_manager(serve(world, host, port, faults, api_key)) as sim,
    ):
        yield sim
