"""The `upstreams` plugin: `[upstreams.<name>]` and the proxy `ANY /api/upstream/{name}/{path}`.

A plugin of its own (rather than part of `breakers`) because it owns its own
top-level section, `[upstreams]`, and its own route; it requires `breakers`
for the `upstream.<name>` breakers. One `aiohttp.ClientSession` with a
bounded connection pool (`max_connections`) serves every upstream; it is
opened and closed by the lifespan.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import aiohttp
from aiohttp import web

from app.api import upstream as upstream_api
from app.api.upstream import Upstream, UpstreamProxy
from app.config import Config
from app.core.config_schema import check, positive, rest_of_table
from app.plugins import BasePlugin
from app.plugins.breakers import BREAKERS


def _http_url(value: str) -> str | None:
    if value.startswith(("http://", "https://")):
        return None
    return f'expected a URL like "http://127.0.0.1:9000/base", got "{value}"'


@dataclass(frozen=True)
class UpstreamSettings:
    """`[upstreams.<name>]`: where `/api/upstream/<name>/...` goes."""

    url: str = field(default="http://127.0.0.1:9000", metadata=check(_http_url))
    # Seconds to connect, send the request and get the response headers (and
    # the longest pause while reading the body); over it: 504 upstream_timeout.
    timeout: float = field(default=10.0, metadata=check(positive))


@dataclass(frozen=True)
class UpstreamsSettings:
    """`[upstreams]`: the shared connection pool, and each `[upstreams.<name>]`."""

    max_connections: int = field(default=100, metadata=check(positive))
    max_connections_per_upstream: int = field(default=20, metadata=check(positive))
    upstreams: Mapping[str, UpstreamSettings] = field(
        default_factory=lambda: MappingProxyType({}), metadata=rest_of_table()
    )


UPSTREAMS = web.AppKey("keel.upstreams", UpstreamProxy)


class UpstreamsPlugin(BasePlugin):
    name = "upstreams"
    requires = ("breakers",)
    settings = UpstreamsSettings

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.options = config.section(UpstreamsSettings)

    def setup(self, app: web.Application) -> None:
        breakers = app[BREAKERS]
        self.proxy = UpstreamProxy(
            {
                name: Upstream(name, s.url, s.timeout, breakers.get(f"upstream.{name}"))
                for name, s in self.options.upstreams.items()
            }
        )
        app[UPSTREAMS] = self.proxy
        upstream_api.add_routes(app, self.proxy)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: web.Application) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(
            limit=self.options.max_connections,
            limit_per_host=self.options.max_connections_per_upstream,
        )
        # auto_decompress off: bodies pass through byte for byte, Content-Encoding intact.
        async with aiohttp.ClientSession(
            connector=connector, auto_decompress=False, cookie_jar=aiohttp.DummyCookieJar()
        ) as session:
            self.proxy.session = session
            try:
                yield
            finally:
                self.proxy.session = None

    def state(self) -> dict[str, Any]:
        return {
            "upstreams": [
                {"name": u.name, "url": u.url, "timeout": u.timeout, "breaker": u.breaker.state}
                for u in self.proxy.upstreams.values()
            ]
        }

    def openapi_paths(self) -> dict[str, Any]:
        return upstream_api.OPENAPI_PATHS
