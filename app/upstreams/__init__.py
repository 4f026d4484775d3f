"""Upstreams: the reverse proxy `ANY /api/upstream/{name}/{path}` (`UpstreamProxy`, published as
`app[UPSTREAMS]`) through the breaker `upstream.<name>`, and `[upstreams]`'s settings."""

from aiohttp import web

from app.upstreams.proxy import Upstream, UpstreamProxy
from app.upstreams.settings import UpstreamSettings, UpstreamsSettings

UPSTREAMS = web.AppKey("keel.upstreams", UpstreamProxy)

__all__ = ["UPSTREAMS", "Upstream", "UpstreamProxy", "UpstreamSettings", "UpstreamsSettings"]
