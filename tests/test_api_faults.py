"""The API client against a real loopback server that misbehaves on purpose."""

from __future__ import annotations

import json
import time
from typing import Any

import anyio
import httpx
import pytest

from tests.faultserver import FaultServer, Reply, gzip_bomb
from watcherd.api.client import ApiClient
from watcherd.errors import MalformedResponseError, UnavailableError

pytestmark = pytest.mark.anyio

KEY = "sk-fault-SECRET-42"
JOB = {"id": "ft-abc", "status": "running"}
MiB = 1024 * 1024


def client_for(http: httpx.AsyncClient, server: FaultServer, **kwargs: Any) -> ApiClient:
    """A client on the fault server, one attempt and no rate cap unless given."""
    kwargs.setdefault("max_attempts", 1)
    kwargs.setdefault("max_rate", 0)
    return ApiClient(http, base_url=server.url, api_key=KEY, **kwargs)


async def test_plain_request_reaches_the_server(
    http: httpx.AsyncClient, server: FaultServer
) -> None:
    """A normal retrieve hits /v1/fine-tunes/{id} with the bearer key and parses the job."""
    job = await client_for(http, server).retrieve("ft-abc")
    assert job.status == "running"
    assert server.seen[0].target == "/v1/fine-tunes/ft-abc"
    assert server.seen[0].headers["authorization"] == f"Bearer {KEY}"


async def test_stall_past_deadline_is_unavailable(
    http: httpx.AsyncClient, server: FaultServer
) -> None:
    """A server that accepts and never answers ends at the deadline as UnavailableError."""
    server.push(Reply(stall=30.0))
    started = time.monotonic()
    with pytest.raises(UnavailableError):
        await client_for(http, server, timeout=0.3).retrieve("ft-abc")
    assert time.monotonic() - started < 1.5


async def test_slow_drip_is_cut_by_the_overall_deadline(
    http: httpx.AsyncClient, server: FaultServer
) -> None:
    """A body dripped a few bytes at a time ends at the overall deadline, not per-chunk."""
    body = json.dumps({**JOB, "pad": "x" * 400}).encode()
    server.push(Reply(body=body, chunk=8, drip=0.05))
    started = time.monotonic()
    with pytest.raises(UnavailableError, match="no complete response"):
        await client_for(http, server, timeout=0.5).retrieve("ft-abc")
    assert time.monotonic() - started < 1.5


async def test_reset_mid_body_is_unavailable(http: httpx.AsyncClient, server: FaultServer) -> None:
    """A connection reset halfway through the body is UnavailableError."""
    body = json.dumps({**JOB, "pad": "x" * 5000}).encode()
    server.push(Reply(body=body, cut_after=100))
    with pytest.raises(UnavailableError):
        await client_for(http, server).retrieve("ft-abc")


async def test_refused_connection_is_unavailable(http: httpx.AsyncClient) -> None:
    """Nobody listening on the port is UnavailableError."""
    with anyio.fail_after(5):
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        await listener.aclose()
    client = ApiClient(http, base_url=f"http://127.0.0.1:{port}", api_key=KEY, max_attempts=1)
    with pytest.raises(UnavailableError):
        await client.list_jobs()


async def test_faults_are_retried_until_a_good_answer(
    http: httpx.AsyncClient, server: FaultServer
) -> None:
    """A reset, a 500 HTML page and a stall are retried; the fourth attempt's job is returned."""
    server.push(
        Reply(body=b"x" * 1000, cut_after=10),
        Reply(status=500, body=b"<html>oops</html>", headers=(("content-type", "text/html"),)),
        Reply(stall=5.0),
    )
    client = client_for(http, server, timeout=0.3, max_attempts=4, backoff_base=0.01)
    assert (await client.retrieve("ft-abc")).id == "ft-abc"
    assert len(server.seen) == 4 and client.stats.retries == 3


@pytest.mark.parametrize("declared", [True, False])
async def test_oversized_body_is_malformed(
    http: httpx.AsyncClient, server: FaultServer, declared: bool
) -> None:
    """A body over the cap is refused, whether its Content-Length says so or not."""
    body = b'{"data": [' + b" " * (2 * MiB) + b"]}"
    server.push(Reply(body=body, content_length=None if declared else -1))
    with pytest.raises(MalformedResponseError, match="too large") as info:
        await client_for(http, server, max_body_bytes=MiB).list_jobs()
    assert info.value.status == 200 and info.value.content_type == "application/json"


async def test_gzip_bomb_is_stopped_at_the_cap(
    http: httpx.AsyncClient, server: FaultServer
) -> None:
    """A small gzip body that inflates past the cap is refused after decompression."""
    bomb = gzip_bomb(16 * MiB)
    assert len(bomb.body) < 64 * 1024
    server.push(bomb)
    with pytest.raises(MalformedResponseError, match="too large"):
        await client_for(http, server, max_body_bytes=MiB).list_jobs()


async def test_malformed_carries_status_content_type_and_snippet(
    http: httpx.AsyncClient, server: FaultServer
) -> None:
    """An HTML 200 over a real socket is malformed with status, content type and snippet."""
    page = b"<!DOCTYPE html><html><body>" + b"Maintenance " * 100 + b"</body></html>"
    server.push(Reply(body=page, headers=(("content-type", "text/html; charset=utf-8"),)))
    with pytest.raises(MalformedResponseError) as info:
        await client_for(http, server).list_jobs()
    err = info.value
    assert err.status == 200 and err.content_type == "text/html; charset=utf-8"
    assert err.snippet == page[:200].decode() and "text/html" in str(err)


async def test_truncated_json_is_malformed(http: httpx.AsyncClient, server: FaultServer) -> None:
    """JSON cut short (with an honest Content-Length) is malformed, not retried."""
    server.push(Reply(body=b'{"metrics": [{"train/global_step": 1, "train/lo'))
    with pytest.raises(MalformedResponseError, match="invalid JSON"):
        await client_for(http, server, max_attempts=3).metrics("ft-abc")
    assert len(server.seen) == 1
