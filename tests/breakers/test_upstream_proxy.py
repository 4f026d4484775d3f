"""The upstream proxy through the real app, against aiohttp servers the test controls."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from multidict import CIMultiDict, CIMultiDictProxy

from app.application import create_app
from app.breakers import BREAKERS
from app.errors import ConfigError
from app.upstreams.proxy import end_to_end
from tests.support.apps import ConfigFactory
from tests.support.services import free_port

MB = 1024 * 1024


class Upstream:
    """An aiohttp server standing in for an upstream; counts what reaches it."""

    def __init__(self) -> None:
        self.hits = 0
        self.status = 200
        self.release = asyncio.Event()  # the slow route waits for it
        self.next_chunk = asyncio.Event()  # the streaming route waits for it
        self.app = web.Application(client_max_size=64 * MB)
        self.app.router.add_route("*", "/base/echo/{tail:.*}", self.echo)
        self.app.router.add_post("/base/digest", self.digest)
        self.app.router.add_get("/base/status", self.answer_status)
        self.app.router.add_get("/base/slow", self.slow)
        self.app.router.add_get("/base/stream", self.stream)

    async def echo(self, request: web.Request) -> web.Response:
        self.hits += 1
        return web.json_response(
            {
                "method": request.method,
                "path": request.path,
                "raw_path": request.raw_path,
                "headers": dict(request.headers),
                "body": (await request.read()).decode(),
            },
            headers={"X-Upstream": "yes", "Keep-Alive": "timeout=5"},
        )

    async def digest(self, request: web.Request) -> web.Response:
        self.hits += 1
        sha, size = hashlib.sha256(), 0
        async for chunk in request.content.iter_chunked(64 * 1024):
            sha.update(chunk)
            size += len(chunk)
        return web.json_response({"size": size, "sha256": sha.hexdigest()})

    async def answer_status(self, request: web.Request) -> web.Response:
        self.hits += 1
        return web.json_response({"status": self.status}, status=self.status)

    async def slow(self, request: web.Request) -> web.Response:
        self.hits += 1
        await self.release.wait()
        return web.json_response({})

    async def stream(self, request: web.Request) -> web.StreamResponse:
        self.hits += 1
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"first")
        await self.next_chunk.wait()  # only once the client has seen the first chunk
        for _ in range(8):
            await response.write(b"x" * MB)
        await response.write_eof()
        return response


Start = Callable[..., Awaitable[TestClient]]


@pytest.fixture
async def upstream(aiohttp_server: Callable[..., Awaitable[TestServer]]) -> AsyncIterator[Upstream]:
    up = Upstream()
    server = await aiohttp_server(up.app)
    up.url = str(server.make_url("/base"))  # type: ignore[attr-defined]
    yield up
    up.release.set()
    up.next_chunk.set()


@pytest.fixture
def start(make_config: ConfigFactory, aiohttp_client: Any, upstream: Upstream) -> Start:
    async def start(**env: str) -> TestClient:
        settings = {
            "PLUGINS__ENABLED": '["metrics", "breakers", "upstreams"]',
            "UPSTREAMS__UP__URL": upstream.url,  # type: ignore[attr-defined]
            "UPSTREAMS__UP__TIMEOUT": "0.3",
            "UPSTREAMS__REFUSED__URL": f"http://127.0.0.1:{free_port()}",
            "BREAKERS__MINIMUM_CALLS": "3",
            "BREAKERS__WINDOW": "3",
            "BREAKERS__OPEN_SECONDS": "30",
            **env,
        }
        return await aiohttp_client(create_app(make_config(**settings)))  # type: ignore[no-any-return]

    return start


async def error_of(response: Any) -> str:
    return str((await response.json())["error"]["code"])


async def test_forwards_method_path_query_body_and_end_to_end_headers(
    start: Start, upstream: Upstream
) -> None:
    client = await start()
    response = await client.put(
        "/api/upstream/up/echo/a%2Fb/c?x=1&y=%20two",
        data=b"hello",
        headers={
            "X-Custom": "kept",
            "Connection": "keep-alive, X-Private",
            "X-Private": "dropped: named in Connection",
            "Proxy-Authorization": "dropped: hop-by-hop",
            "X-Request-ID": "req-12345678",
            "X-Forwarded-For": "203.0.113.9",
        },
    )
    assert response.status == 200
    seen = await response.json()
    assert seen["method"] == "PUT"
    assert seen["path"] == "/base/echo/a/b/c"  # aiohttp decodes %2F on its side
    assert seen["raw_path"] == "/base/echo/a%2Fb/c?x=1&y=%20two"
    assert seen["body"] == "hello"
    headers = {k.lower(): v for k, v in seen["headers"].items()}
    assert headers["x-custom"] == "kept"
    assert "x-private" not in headers
    assert "proxy-authorization" not in headers
    assert headers["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-request-id"] == "req-12345678" == response.headers["X-Request-ID"]
    assert response.headers["X-Upstream"] == "yes"
    assert "Keep-Alive" not in response.headers


def test_end_to_end_drops_hop_by_hop_and_connection_named_headers() -> None:
    headers = CIMultiDictProxy(
        CIMultiDict(
            [
                ("Connection", "close, X-A"),
                ("Connection", "x-b"),
                ("X-A", "1"),
                ("X-B", "2"),
                ("Transfer-Encoding", "chunked"),
                ("Upgrade", "websocket"),
                ("TE", "trailers"),
                ("X-Kept", "3"),
                ("X-Kept", "4"),
            ]
        )
    )
    assert list(end_to_end(headers).items()) == [("X-Kept", "3"), ("X-Kept", "4")]


async def test_streams_a_large_request_body(start: Start, upstream: Upstream) -> None:
    client = await start()
    payload = b"0123456789abcdef" * (4 * MB // 16)

    async def chunks() -> AsyncIterator[bytes]:
        for offset in range(0, len(payload), MB):
            yield payload[offset : offset + MB]

    response = await client.post("/api/upstream/up/digest", data=chunks())
    assert response.status == 200
    assert await response.json() == {
        "size": len(payload),
        "sha256": hashlib.sha256(payload).hexdigest(),
    }


async def test_streams_the_response_before_the_upstream_has_finished(
    start: Start, upstream: Upstream
) -> None:
    client = await start()
    response = await client.get("/api/upstream/up/stream")
    assert response.status == 200
    # The upstream holds the rest back until we have this: a buffering proxy would hang here.
    assert await response.content.readexactly(5) == b"first"
    upstream.next_chunk.set()
    rest = await response.read()
    assert len(rest) == 8 * MB


async def test_unknown_upstream_is_404(start: Start) -> None:
    client = await start()
    response = await client.get("/api/upstream/nope/x")
    assert response.status == 404
    assert await error_of(response) == "not_found"


async def test_refused_connection_is_502(start: Start) -> None:
    client = await start()
    response = await client.get("/api/upstream/refused/x")
    assert response.status == 502
    assert await error_of(response) == "bad_gateway"
    assert client.app[BREAKERS].get("upstream.refused").stats().failures == 1


async def test_over_timeout_is_504(start: Start, upstream: Upstream) -> None:
    client = await start()
    response = await client.get("/api/upstream/up/slow")
    assert response.status == 504
    assert await error_of(response) == "upstream_timeout"
    assert client.app[BREAKERS].get("upstream.up").stats().failures == 1


async def test_5xx_opens_the_breaker_and_then_the_upstream_is_not_called(
    start: Start, upstream: Upstream
) -> None:
    client = await start()
    upstream.status = 500
    for _ in range(3):
        response = await client.get("/api/upstream/up/status")
        assert response.status == 500  # the upstream's own answer, passed through
    assert upstream.hits == 3
    response = await client.get("/api/upstream/up/status")
    assert response.status == 503
    assert await error_of(response) == "circuit_open"
    assert response.headers["Retry-After"] == "30"
    assert upstream.hits == 3  # refused without touching the upstream
    assert client.app[BREAKERS].get("upstream.up").state == "open"


async def test_4xx_never_counts_as_a_failure(start: Start, upstream: Upstream) -> None:
    client = await start()
    upstream.status = 404
    for _ in range(6):
        assert (await client.get("/api/upstream/up/status")).status == 404
    breaker = client.app[BREAKERS].get("upstream.up")
    assert breaker.state == "closed"
    assert breaker.stats().failures == 0


async def test_upstream_breakers_take_their_overrides(start: Start) -> None:
    client = await start(**{"BREAKERS__UPSTREAM.UP__OPEN_SECONDS": "7"})
    assert client.app[BREAKERS].get("upstream.up").machine.policy.open_seconds == 7


def test_an_upstream_url_must_be_http(make_config: ConfigFactory) -> None:
    with pytest.raises(ConfigError) as caught:
        make_config('[upstreams.bad]\nurl = "ftp://x"\n')
    assert caught.value.problems == [
        'upstreams.bad.url: expected a URL like "http://127.0.0.1:9000/base", got "ftp://x"'
    ]


def test_upstreams_are_read_from_the_file(make_config: ConfigFactory) -> None:
    from app.upstreams import UpstreamsSettings

    config = make_config(
        '[upstreams]\nmax_connections = 5\n[upstreams.a]\nurl = "http://h/"\ntimeout = 2\n'
        '[breakers."upstream.a"]\nfailure_rate = 10\n'
    )
    settings = config.settings(UpstreamsSettings)
    assert settings.max_connections == 5
    assert settings.upstreams["a"].timeout == 2.0
    plain = config.as_dict()
    assert plain["upstreams"]["a"] == {"url": "http://h/", "timeout": 2.0}
    assert plain["breakers"]["upstream.a"] == {"failure_rate": 10.0}
