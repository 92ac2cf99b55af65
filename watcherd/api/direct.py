"""GET requests sent straight to the connection pool httpx built, without httpx's models.

A poll is one small GET. Sent through `httpx.AsyncClient.send`, most of its CPU is
httpx's own layers above the pool: the URL parsed and re-encoded, a `Request` and a
`Response` built, auth, redirect and cookie passes that watcherd never uses, and the
conversion to and from httpcore's request and response. A `Route` keeps what never
changes for one API root (the pool its URL is mounted on, so proxies from the
environment still apply; the origin; the request headers with `Host`) and builds
httpcore's request from the path and query alone.

What the response needs is kept as httpx does it: the body is decoded with httpx's
own content decoders (the same `Accept-Encoding` is sent), httpcore's errors are
mapped to httpx's by httpx's own mapping, and a `Set-Cookie` is stored in the
client's cookie jar. A client whose requests need more (cookies to send, auth, event
hooks, a custom transport) or a URL whose path needs quoting goes through
`httpx.AsyncClient.send` as before (`Route.target` answers None).

This reaches into httpx 0.28's private parts (`_transport_for_url`, the transport's
`_pool`, `Response._get_content_decoder`, `map_httpcore_exceptions`); pyproject pins the range and
tests/test_api_direct.py checks the route is taken and answers as httpx does.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from urllib.parse import urlencode

import httpcore
import httpx
from httpx._decoders import ContentDecoder
from httpx._transports.default import map_httpcore_exceptions

#: A path the route sends as it is: nothing in it that a URL would quote.
_PLAIN_PATH = re.compile(r"[A-Za-z0-9/_.~-]*")


class Route:
    """How a GET under one API root reaches its pool, built once per client."""

    __slots__ = ("_headers", "_origin", "_pool", "_prefix", "_root", "http")

    def __init__(
        self,
        http: httpx.AsyncClient,
        pool: httpcore.AsyncConnectionPool,
        root: httpx.URL,
        headers: httpx.Headers,
    ) -> None:
        self.http = http
        self._pool = pool
        self._prefix = str(root)
        self._root = root.raw_path
        self._origin = (root.raw_scheme, root.raw_host, root.port)
        self._headers = [(b"Host", root.netloc), *headers.raw]

    @classmethod
    def of(cls, http: httpx.AsyncClient, root: str, headers: httpx.Headers) -> Route | None:
        """The route for GETs under `root` through `http`, or None when `http` needs
        its own layers (auth, event hooks, a transport that is not httpx's pool)."""
        url = httpx.URL(root)
        if url.query or url.fragment or http.auth is not None:
            return None
        if any(http.event_hooks.values()):
            return None
        transport = http._transport_for_url(url)  # private: see the module's text
        pool = getattr(transport, "_pool", None)
        if type(transport) is not httpx.AsyncHTTPTransport or not isinstance(
            pool, httpcore.AsyncConnectionPool
        ):
            return None
        return cls(http, pool, url, headers)

    def target(self, url: str, params: Mapping[str, str]) -> bytes | None:
        """The request target (path and query) of `url` with `params`, or None when
        this request must go through httpx (cookies to send, a path to quote)."""
        if self.http.cookies or not url.startswith(self._prefix):
            return None
        rest = url[len(self._prefix) :]
        if not _PLAIN_PATH.fullmatch(rest):
            return None
        path = self._root + rest.encode("ascii")
        return path + b"?" + urlencode(list(params.items())).encode("ascii") if params else path

    async def get(self, target: bytes, timeouts: dict[str, float | None]) -> DirectResponse:
        """Send the GET; its response, whose body is yet to be read. A cookie it sets
        goes into the client's jar, as `httpx.AsyncClient.send` keeps it."""
        scheme, host, port = self._origin
        request = httpcore.Request(
            b"GET",
            httpcore.URL(scheme=scheme, host=host, port=port, target=target),
            headers=self._headers,
            extensions={"timeout": timeouts},
        )
        with map_httpcore_exceptions():
            response = DirectResponse(await self._pool.handle_async_request(request))
        if "set-cookie" in response.headers:
            kept = response.as_httpx()
            kept.request = httpx.Request("GET", bytes(request.url).decode("ascii"))
            self.http.cookies.extract_cookies(kept)
        return response


class DirectResponse:
    """httpcore's response with the three things `transport` reads of httpx's."""

    __slots__ = ("_inner", "headers", "status_code")

    def __init__(self, inner: httpcore.Response) -> None:
        self._inner = inner
        self.status_code = inner.status
        self.headers = httpx.Headers(inner.headers)

    def as_httpx(self) -> httpx.Response:
        """An `httpx.Response` with this status and these headers (no body)."""
        return httpx.Response(self.status_code, headers=self.headers)

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        """The body, decoded as its Content-Encoding says (by `httpx.Response`'s own
        choice of decoder)."""
        decoder: ContentDecoder | None = None
        if "content-encoding" in self.headers:
            decoder = self.as_httpx()._get_content_decoder()  # private: see the module's text
        stream = self._inner.stream
        assert hasattr(stream, "__aiter__")
        with map_httpcore_exceptions():
            async for chunk in stream:
                data = chunk if decoder is None else decoder.decode(chunk)
                if data:
                    yield data
        if decoder is not None:
            tail = decoder.flush()
            if tail:
                yield tail

    async def aclose(self) -> None:
        """Give the connection back to the pool (or close it)."""
        with map_httpcore_exceptions():
            await self._inner.aclose()
