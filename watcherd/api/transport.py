"""One HTTP exchange, bounded: an overall deadline and a body cap enforced while streaming.

httpx's read timeout restarts on every chunk, so a slow-drip server could hold a request
forever; here the whole exchange (connect, send, headers and the full body) runs under
one `anyio.fail_after`. The body cap applies to the decoded bytes (`aiter_bytes`
decompresses), so a gzip bomb stops at the cap, and a declared `Content-Length` above
the cap is refused before reading. Error bodies (status >= 400) are only read up to a
small cap and truncated, since all we need from them is a message.

A caller that passes `consume` gets the body of a 2xx JSON response chunk by chunk
instead (the cap still counts every byte), so a big body is never held whole;
`RawResponse.body` then holds only its first bytes, for error snippets.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import anyio
import httpx

from watcherd.api.direct import Route
from watcherd.api.shapes import snippet
from watcherd.errors import MalformedResponseError, UnavailableError

ERROR_BODY_CAP = 64 * 1024
#: The first bytes of a consumed body kept for error snippets.
HEAD_BYTES = 1024

Consume = Callable[[bytes], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class RawResponse:
    """A complete response: status, headers and the (decoded) body bytes."""

    url: str
    status: int
    headers: httpx.Headers
    body: bytes
    streamed: bool = False  # the body went to `consume`; `body` is its head

    @property
    def content_type(self) -> str:
        """The Content-Type header as sent (empty when missing)."""
        return str(self.headers.get("content-type", ""))


@dataclass(frozen=True, slots=True)
class Exchange:
    """Everything needed to make one request; `secret` is redacted from snippets.

    `headers` are all the request's headers, the client's included (`request_headers`).
    """

    method: str
    url: str
    params: Mapping[str, str]
    headers: Mapping[str, str]
    timeout: float
    max_body: int
    secret: str
    route: Route | None = None  # a GET under the route's root skips httpx's layers


class Streamed(Protocol):
    """What is read of a response: `httpx.Response` or `direct.DirectResponse`."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> httpx.Headers: ...

    def aiter_bytes(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


def is_json(content_type: str) -> bool:
    """True for `application/json` and `+json` media types, parameters ignored."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


async def fetch(
    http: httpx.AsyncClient, ex: Exchange, consume: Consume | None = None
) -> RawResponse:
    """Make one request; raise UnavailableError or MalformedResponseError when it fails.

    With `consume`, a 2xx JSON body is handed over chunk by chunk under the same
    deadline and cap (its exceptions propagate as they are).
    """
    try:
        with anyio.fail_after(ex.timeout):
            return await _stream(http, ex, consume)
    except TimeoutError:
        raise UnavailableError(f"no complete response within {ex.timeout:g}s", url=ex.url) from None
    except httpx.TimeoutException as exc:
        raise UnavailableError(f"timed out: {type(exc).__name__}", url=ex.url) from exc
    except httpx.HTTPError as exc:
        raise UnavailableError(
            f"transport failed: {type(exc).__name__}: {exc}", url=ex.url
        ) from exc


def request_headers(http: httpx.AsyncClient, own: Mapping[str, str]) -> httpx.Headers:
    """`http`'s headers with `own` set over them: what `build_request` would merge for
    every request, merged once (an `Exchange`'s `headers`)."""
    merged = httpx.Headers(http.headers)
    merged.update(own)
    return merged


@functools.cache
def _timeouts(seconds: float) -> dict[str, float | None]:
    """The `timeout` extension httpx gives a request sent with `timeout=seconds`."""
    return httpx.Timeout(seconds).as_dict()


def build(http: httpx.AsyncClient, ex: Exchange) -> httpx.Request:
    """The request `http.build_request` makes for `ex`, built directly: `ex.headers`
    already hold the client's own, so there is nothing to merge per request (nor a URL
    to parse twice). Cookies the service set on the client go through
    `build_request`, which adds them, as before."""
    if http.cookies:
        return http.build_request(
            ex.method, ex.url, params=ex.params, headers=ex.headers, timeout=ex.timeout
        )
    extensions = {"timeout": _timeouts(ex.timeout)}
    return httpx.Request(
        ex.method, ex.url, params=ex.params, headers=ex.headers, extensions=extensions
    )


async def _open(http: httpx.AsyncClient, ex: Exchange) -> Streamed:
    """Send `ex`; the response with its body unread. A GET the route can take goes
    straight to the pool (see `direct`)."""
    route = ex.route
    if route is not None and ex.method == "GET":
        target = route.target(ex.url, ex.params)
        if target is not None:
            return await route.get(target, _timeouts(ex.timeout))
    return await http.send(build(http, ex), stream=True, follow_redirects=False)


async def _stream(http: httpx.AsyncClient, ex: Exchange, consume: Consume | None) -> RawResponse:
    response = await _open(http, ex)
    streamed = (
        consume is not None
        and 200 <= response.status_code < 300
        and is_json(response.headers.get("content-type", ""))
    )
    try:
        if streamed:
            assert consume is not None
            body = await _consume_capped(response, ex, consume)
        else:
            body = await _read_capped(response, ex)
    except httpx.DecodingError as exc:
        raise MalformedResponseError(
            f"the body could not be decoded: {exc}",
            status=response.status_code,
            content_type=response.headers.get("content-type", ""),
            snippet="",
            url=ex.url,
        ) from exc
    finally:
        await response.aclose()
    return RawResponse(
        url=ex.url,
        status=response.status_code,
        headers=response.headers,
        body=body,
        streamed=streamed,
    )


async def _consume_capped(response: Streamed, ex: Exchange, consume: Consume) -> bytes:
    """Hand the body to `consume` chunk by chunk; return its head. Oversized: refused."""
    declared = _content_length(response.headers)
    if declared is not None and declared > ex.max_body:
        raise _oversized(response, ex, b"", f"declares {declared} bytes")
    head = b""
    size = 0
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if len(head) < HEAD_BYTES:
            head += chunk[: HEAD_BYTES - len(head)]
        if size > ex.max_body:
            raise _oversized(response, ex, head, f"exceeds {ex.max_body} bytes")
        await consume(chunk)
    return head


async def _read_capped(response: Streamed, ex: Exchange) -> bytes:
    is_error = response.status_code >= 400
    cap = min(ex.max_body, ERROR_BODY_CAP) if is_error else ex.max_body
    declared = _content_length(response.headers)
    if not is_error and declared is not None and declared > cap:
        raise _oversized(response, ex, b"", f"declares {declared} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size > cap:
            if is_error:
                return b"".join(chunks)[:cap]
            raise _oversized(response, ex, b"".join(chunks), f"exceeds {cap} bytes")
    return b"".join(chunks)


def _oversized(response: Streamed, ex: Exchange, head: bytes, why: str) -> MalformedResponseError:
    return MalformedResponseError(
        f"response body too large: {why} (cap {ex.max_body} bytes)",
        status=response.status_code,
        content_type=response.headers.get("content-type", ""),
        snippet=snippet(head, ex.secret),
        url=ex.url,
    )


def _content_length(headers: httpx.Headers) -> int | None:
    try:
        return int(headers["content-length"])
    except (KeyError, ValueError):
        return None
