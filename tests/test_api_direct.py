"""GETs sent straight to httpx's pool (api/direct.py) go out and come back as httpx's do.

A loopback server records each request's bytes and answers with a scripted response;
the same exchange made through the route and through `httpx.AsyncClient.send` must
put the same bytes on the wire and give the same `RawResponse`.
"""

from __future__ import annotations

import asyncio
import gzip
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace

import httpx
import pytest

from tests.loopback import listening
from watcherd.api import transport
from watcherd.api.client import ApiClient
from watcherd.api.direct import Route
from watcherd.api.transport import Exchange, RawResponse, request_headers
from watcherd.config import ApiConfig
from watcherd.errors import MalformedResponseError, UnavailableError

pytestmark = pytest.mark.anyio

BODY = b'{"object": "list", "data": [1, 2, 3]}'


def response(body: bytes, *headers: str, status: str = "200 OK") -> bytes:
    """An HTTP/1.1 response with `body` and its length."""
    head = [f"HTTP/1.1 {status}", "content-type: application/json", *headers]
    head.append(f"content-length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


@dataclass
class Server:
    """Answers every request with `answer` and keeps each request's head as sent."""

    answer: bytes
    requests: list[bytes] = field(default_factory=list)
    port: int = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer requests on one connection until the client closes it."""
        while True:
            try:
                self.requests.append(await reader.readuntil(b"\r\n\r\n"))
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            writer.write(self.answer)
            await writer.drain()
        writer.close()


@asynccontextmanager
async def serving(answer: bytes) -> AsyncIterator[Server]:
    """The server on a free loopback port."""
    server = Server(answer)
    async with listening(server.serve) as server.port:
        yield server


def exchange(http: httpx.AsyncClient, root: str, path: str, params: dict[str, str]) -> Exchange:
    """A GET under `root`, its route attached (None when `Route.of` refuses `http`)."""
    headers = request_headers(http, {"authorization": "Bearer k", "accept": "application/json"})
    return Exchange(
        method="GET",
        url=root + path,
        params=params,
        headers=headers,
        timeout=5.0,
        max_body=1 << 20,
        secret="k",
        route=Route.of(http, root, headers),
    )


def same(a: RawResponse, b: RawResponse) -> None:
    """Two responses equal in everything the client reads."""
    assert (a.status, a.headers.raw, a.body, a.streamed) == (
        b.status,
        b.headers.raw,
        b.body,
        b.streamed,
    )


async def both(answer: bytes, path: str, params: dict[str, str]) -> tuple[Server, RawResponse]:
    """The exchange through httpx, then through the route: same wire bytes, same answer."""
    async with serving(answer) as server, ApiClient.http_client(ApiConfig()) as http:
        root = f"http://127.0.0.1:{server.port}/v1"
        ex = exchange(http, root, path, params)
        assert ex.route is not None and ex.route.target(ex.url, params) is not None
        plain = await transport.fetch(http, replace(ex, route=None))
        direct = await transport.fetch(http, ex)
    assert len(server.requests) == 2
    assert server.requests[0] == server.requests[1]
    same(plain, direct)
    return server, direct


async def test_a_get_puts_the_same_bytes_on_the_wire_and_reads_the_same_answer() -> None:
    server, raw = await both(
        response(BODY), "/fine-tunes/ft-a_1/metrics", {"global_step_from": "12"}
    )
    assert raw.body == BODY
    assert server.requests[0].startswith(b"GET /v1/fine-tunes/ft-a_1/metrics?global_step_from=12 ")


async def test_a_get_without_params_has_no_query() -> None:
    server, raw = await both(response(BODY), "/fine-tunes", {})
    assert server.requests[0].startswith(b"GET /v1/fine-tunes HTTP/1.1\r\n")
    assert raw.status == 200


@pytest.mark.parametrize(
    ("encoding", "packed"),
    [
        ("gzip", gzip.compress(BODY, mtime=0)),
        ("deflate", zlib.compress(BODY)),
        ("identity", BODY),
        ("x-unknown", BODY),
    ],
    ids=["gzip", "deflate", "identity", "x-unknown"],  # stable across xdist workers
)
async def test_an_encoded_body_is_decoded_as_httpx_decodes_it(encoding: str, packed: bytes) -> None:
    _, raw = await both(response(packed, f"content-encoding: {encoding}"), "/fine-tunes", {})
    assert raw.body == BODY


async def test_an_error_status_and_its_body_come_back_alike() -> None:
    answer = response(b'{"error": "slow down"}', "retry-after: 3", status="429 Too Many Requests")
    _, raw = await both(answer, "/fine-tunes/ft-x", {})
    assert raw.status == 429 and raw.headers["retry-after"] == "3"


async def test_a_broken_gzip_body_is_refused_on_both_paths() -> None:
    answer = response(b"not gzip at all", "content-encoding: gzip")
    async with serving(answer) as server, ApiClient.http_client(ApiConfig()) as http:
        ex = exchange(http, f"http://127.0.0.1:{server.port}/v1", "/fine-tunes", {})
        for route in (None, ex.route):
            with pytest.raises(MalformedResponseError, match="could not be decoded"):
                await transport.fetch(http, replace(ex, route=route))


async def test_a_refused_connection_is_unavailable_on_both_paths() -> None:
    async with serving(b"") as server:
        port = server.port
    async with ApiClient.http_client(ApiConfig()) as http:
        ex = exchange(http, f"http://127.0.0.1:{port}/v1", "/fine-tunes", {})
        assert ex.route is not None
        messages = []
        for route in (None, ex.route):
            with pytest.raises(UnavailableError) as caught:
                await transport.fetch(http, replace(ex, route=route))
            messages.append(str(caught.value))
        assert messages[0] == messages[1]
        assert "ConnectError" in messages[0]


async def test_a_cookie_the_service_sets_is_kept_and_sent_back() -> None:
    """A Set-Cookie is stored as httpx stores it; the next GET (through httpx, since
    there is a cookie to send) carries it."""
    answer = response(BODY, "set-cookie: __cf_bm=abc; Path=/")
    async with serving(answer) as server, ApiClient.http_client(ApiConfig()) as http:
        ex = exchange(http, f"http://127.0.0.1:{server.port}/v1", "/fine-tunes", {})
        await transport.fetch(http, ex)
        assert http.cookies.get("__cf_bm") == "abc"
        assert ex.route is not None and ex.route.target(ex.url, {}) is None
        await transport.fetch(http, ex)
    assert b"cookie: __cf_bm=abc" in server.requests[1].lower()


def test_a_path_that_needs_quoting_goes_through_httpx() -> None:
    http = ApiClient.http_client(ApiConfig())
    route = Route.of(http, "http://127.0.0.1:9/v1", httpx.Headers())
    assert route is not None
    assert route.target("http://127.0.0.1:9/v1/fine-tunes/ft-a b", {}) is None
    assert route.target("http://other:9/v1/fine-tunes", {}) is None
    assert route.target("http://127.0.0.1:9/v1/fine-tunes", {"a": "x y&z"}) == (
        b"/v1/fine-tunes?a=x+y%26z"
    )


def test_clients_that_need_httpx_layers_get_no_route() -> None:
    """Auth, event hooks, a custom transport or a proxy's mount: httpx's own path."""
    root = "http://127.0.0.1:9/v1"
    hooked = httpx.AsyncClient(event_hooks={"request": [lambda request: None]})
    authed = httpx.AsyncClient(auth=("u", "p"))
    mocked = httpx.AsyncClient(transport=httpx.MockTransport(lambda request: httpx.Response(200)))
    for http in (hooked, authed, mocked):
        assert Route.of(http, root, httpx.Headers()) is None
    assert Route.of(httpx.AsyncClient(), root + "?q=1", httpx.Headers()) is None


def test_a_proxy_from_the_environment_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    """With HTTP_PROXY set, the route sends through the proxy's pool httpx mounted."""
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:3128")
    http = ApiClient.http_client(ApiConfig())
    route = Route.of(http, "http://api.example:80/v1", httpx.Headers())
    assert route is not None
    assert type(route._pool).__name__ == "AsyncHTTPProxy"


async def test_the_api_client_polls_through_the_route() -> None:
    """ApiClient attaches the route: a listing is answered without httpx.AsyncClient.send."""
    answer = response(b'{"object": "list", "data": []}')
    async with serving(answer) as server, ApiClient.http_client(ApiConfig()) as http:

        async def refuse(*args: object, **kwargs: object) -> httpx.Response:
            raise AssertionError("went through httpx.AsyncClient.send")

        http.send = refuse  # type: ignore[method-assign]
        api = ApiClient(http, base_url=f"http://127.0.0.1:{server.port}/v1", api_key="k")
        assert await api.list_jobs() == []
    assert server.requests[0].startswith(b"GET /v1/fine-tunes HTTP/1.1")
