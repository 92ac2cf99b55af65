"""One HTTP exchange, bounded: an overall deadline and a body cap enforced while streaming.

httpx's read timeout restarts on every chunk, so a slow-drip server could hold a request
forever; here the whole exchange (connect, send, headers and the full body) runs under
one `anyio.fail_after`. The body cap applies to the decoded bytes (`aiter_bytes`
decompresses), so a gzip bomb stops at the cap, and a declared `Content-Length` above
the cap is refused before reading. Error bodies (status >= 400) are only read up to a
small cap and truncated, since all we need from them is a message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import anyio
import httpx

from watcherd.api.shapes import snippet
from watcherd.errors import MalformedResponseError, UnavailableError

ERROR_BODY_CAP = 64 * 1024


@dataclass(frozen=True, slots=True)
class RawResponse:
    """A complete response: status, headers and the (decoded) body bytes."""

    url: str
    status: int
    headers: httpx.Headers
    body: bytes

    @property
    def content_type(self) -> str:
        """The Content-Type header as sent (empty when missing)."""
        return str(self.headers.get("content-type", ""))


@dataclass(frozen=True, slots=True)
class Exchange:
    """Everything needed to make one request; `secret` is redacted from snippets."""

    method: str
    url: str
    params: Mapping[str, str]
    headers: Mapping[str, str]
    timeout: float
    max_body: int
    secret: str


async def fetch(http: httpx.AsyncClient, ex: Exchange) -> RawResponse:
    """Make one request; raise UnavailableError or MalformedResponseError when it fails."""
    try:
        with anyio.fail_after(ex.timeout):
            return await _stream(http, ex)
    except TimeoutError:
        raise UnavailableError(f"no complete response within {ex.timeout:g}s", url=ex.url) from None
    except httpx.TimeoutException as exc:
        raise UnavailableError(f"timed out: {type(exc).__name__}", url=ex.url) from exc
    except httpx.HTTPError as exc:
        raise UnavailableError(
            f"transport failed: {type(exc).__name__}: {exc}", url=ex.url
        ) from exc


async def _stream(http: httpx.AsyncClient, ex: Exchange) -> RawResponse:
    request = http.build_request(
        ex.method, ex.url, params=ex.params, headers=ex.headers, timeout=ex.timeout
    )
    response = await http.send(request, stream=True, follow_redirects=False)
    try:
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
    return RawResponse(url=ex.url, status=response.status_code, headers=response.headers, body=body)


async def _read_capped(response: httpx.Response, ex: Exchange) -> bytes:
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


def _oversized(
    response: httpx.Response, ex: Exchange, head: bytes, why: str
) -> MalformedResponseError:
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
