"""`ANY /api/upstream/{name}/{path}`: the reverse proxy to `[upstreams.<name>]`.

The request (method, path, query, end-to-end headers, body) is forwarded to
`<url>/<path>` through the breaker `upstream.<name>`, and the response
streamed back; neither body is ever held whole in memory. Hop-by-hop headers
(RFC 9110 §7.6.1, and any named in `Connection`) are dropped both ways;
`X-Forwarded-For`, `X-Forwarded-Proto` and `X-Request-ID` are added.

Errors: unknown upstream -> 404 `not_found`; breaker refusing -> 503
`circuit_open` with `Retry-After`, the upstream untouched; connection refused
or broken before the response -> 502 `bad_gateway`; no response headers
within `timeout` -> 504 `upstream_timeout`. The breaker hears one outcome per
call, when the response headers arrive: a 5xx or any of the errors above is a
failure, anything else (a 4xx too) a success; its duration is the time to
those headers, so a long download is never a slow call. A body that breaks
after the headers were sent cannot change the status any more: the client's
connection is cut so it cannot mistake a truncated body for a whole one.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from app.breakers import Breaker
from app.core.request_id import REQUEST_ID
from app.errors import BadGateway, NotFound, UpstreamTimeout

log = logging.getLogger("keel.upstream")

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
# Set by the client library for the upstream, never copied from the caller.
_REQUEST_ONLY_OURS = frozenset({"host", "x-forwarded-for", "x-forwarded-proto", "x-request-id"})
CHUNK = 64 * 1024
# GET brings HEAD. OPTIONS stays with CORS preflight, which owns it on every route.
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


@dataclass(frozen=True)
class Upstream:
    """One `[upstreams.<name>]` with its breaker."""

    name: str
    url: str
    timeout: float
    breaker: Breaker


def end_to_end(headers: CIMultiDictProxy[str], drop: Iterable[str] = ()) -> CIMultiDict[str]:
    """`headers` without hop-by-hop ones (and without those named in `Connection`)."""
    named = {
        token.strip().lower()
        for value in headers.getall("Connection", [])
        for token in value.split(",")
    }
    skip = HOP_BY_HOP | named | set(drop)
    return CIMultiDict((k, v) for k, v in headers.items() if k.lower() not in skip)


def _forwarded(request: web.Request) -> CIMultiDict[str]:
    headers = end_to_end(request.headers, _REQUEST_ONLY_OURS)
    peer = request.remote or "unknown"
    prior = request.headers.get("X-Forwarded-For")
    headers["X-Forwarded-For"] = f"{prior}, {peer}" if prior else peer
    headers["X-Forwarded-Proto"] = request.scheme
    if request_id := request.get(REQUEST_ID):
        headers["X-Request-ID"] = request_id
    return headers


async def _body(request: web.Request) -> AsyncIterator[bytes]:
    async for chunk in request.content.iter_chunked(CHUNK):
        yield chunk


class UpstreamProxy:
    """The handler and its shared client session (set by the plugin's lifespan)."""

    def __init__(self, upstreams: Mapping[str, Upstream]) -> None:
        self.upstreams = dict(upstreams)
        self.session: aiohttp.ClientSession | None = None

    def target(self, upstream: Upstream, request: web.Request) -> URL:
        """`<url>/<path>?<query>`, path and query exactly as the client encoded them."""
        raw = request.rel_url
        path = raw.raw_path.split("/", 4)[4] if raw.raw_path.count("/") >= 4 else ""
        url = f"{upstream.url.rstrip('/')}/{path}"
        if raw.raw_query_string:
            url = f"{url}?{raw.raw_query_string}"
        return URL(url, encoded=True)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        upstream = self.upstreams.get(request.match_info["name"])
        if upstream is None:
            raise NotFound(f"no upstream named {request.match_info['name']!r}")
        breaker = upstream.breaker
        if not breaker.allow():
            raise breaker.refusal()
        started = time.monotonic()
        try:
            answer = await self._send(upstream, request)
        except BaseException as exc:
            self._record_error(breaker, exc, time.monotonic() - started)
            if isinstance(exc, TimeoutError):
                raise UpstreamTimeout(
                    f"{upstream.name} did not answer within {upstream.timeout:g}s"
                ) from None
            if isinstance(exc, aiohttp.ClientError):
                log.warning("upstream %s: %s", upstream.name, exc)
                raise BadGateway(f"{upstream.name} could not be reached") from None
            raise
        breaker.record(answer.status < 500, time.monotonic() - started)
        try:
            return await self._relay(request, answer)
        finally:
            answer.release()

    @staticmethod
    def _record_error(breaker: Breaker, exc: BaseException, seconds: float) -> None:
        if isinstance(exc, TimeoutError | aiohttp.ClientError):
            breaker.record(False, seconds)
        else:  # cancelled by our client, or our own bug: says nothing of the upstream
            breaker.release()

    async def _send(self, upstream: Upstream, request: web.Request) -> aiohttp.ClientResponse:
        assert self.session is not None, "the upstreams plugin's lifespan is not running"
        async with asyncio.timeout(upstream.timeout):
            return await self.session.request(
                request.method,
                self.target(upstream, request),
                headers=_forwarded(request),
                data=_body(request) if request.body_exists else None,
                allow_redirects=False,
                # A body that stalls for `timeout` is abandoned too.
                timeout=aiohttp.ClientTimeout(total=None, sock_read=upstream.timeout),
            )

    async def _relay(
        self, request: web.Request, answer: aiohttp.ClientResponse
    ) -> web.StreamResponse:
        response = web.StreamResponse(status=answer.status, reason=answer.reason)
        response.headers.extend(end_to_end(answer.headers))
        await response.prepare(request)
        try:
            async for chunk in answer.content.iter_chunked(CHUNK):
                await response.write(chunk)
        except (aiohttp.ClientError, TimeoutError) as exc:
            log.warning("upstream body broke after the headers were sent: %r", exc)
            if request.transport is not None:
                request.transport.abort()
            return response
        await response.write_eof()
        return response


def add_routes(app: web.Application, proxy: UpstreamProxy) -> None:
    for method in METHODS:
        app.router.add_route(method, "/api/upstream/{name}/{path:.*}", proxy.handle)
