"""The `upstreams` plugin: `[upstreams.<name>]` and the proxy `ANY /api/upstream/{name}/{path}`.

A plugin of its own (rather than part of `breakers`) because it owns its own
top-level section, `[upstreams]`, and its own route; it requires `breakers`
for the `upstream.<name>` breakers. One `aiohttp.ClientSession` with a
bounded connection pool (`max_connections`) serves every upstream; it is
opened and closed by the lifespan.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp import web

from app.api import upstream_openapi
from app.breakers import BREAKERS
from app.core.config_schema import redact_url
from app.plugins import BasePlugin, SettingsOf
from app.upstreams import UPSTREAMS, Upstream, UpstreamProxy, UpstreamsSettings
from app.upstreams.proxy import add_routes


class UpstreamsPlugin(BasePlugin):
    name = "upstreams"
    requires = ("breakers",)
    settings = SettingsOf(UpstreamsSettings)

    def setup(self, app: web.Application) -> None:
        breakers = app[BREAKERS]
        self.proxy = app[UPSTREAMS] = UpstreamProxy(
            {
                name: Upstream(name, s.url, s.timeout, breakers.get(f"upstream.{name}"))
                for name, s in self.settings.upstreams.items()
            }
        )
        add_routes(app, self.proxy)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: web.Application) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(
            limit=self.settings.max_connections,
            limit_per_host=self.settings.max_connections_per_upstream,
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
                {
                    "name": u.name,
                    "url": redact_url(u.url),
                    "timeout": u.timeout,
                    "breaker": u.breaker.state,
                }
                for u in self.proxy.upstreams.values()
            ]
        }

    def openapi_paths(self) -> dict[str, Any]:
        return upstream_openapi.paths(sorted(self.proxy.upstreams))
