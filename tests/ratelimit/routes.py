"""`tests.ratelimit.routes:RoutesPlugin`: API-shaped routes for the rate-limit tests.

- `GET|POST /api/things/{id}` answers `{"id": ...}`; id "missing" raises `NotFound`,
  id "gone" raises aiohttp's `HTTPGone` (error responses must carry the headers too).
- `* /api/any` answers any method (rules per method on a wildcard route).
- `GET /open` is outside /api/: not limited by the default.
"""

from __future__ import annotations

from aiohttp import web

from app.errors import NotFound
from app.plugins import BasePlugin


async def thing(request: web.Request) -> web.Response:
    ident = request.match_info["id"]
    if ident == "missing":
        raise NotFound("No such thing.")
    if ident == "gone":
        raise web.HTTPGone()
    return web.json_response({"id": ident})


async def anything(request: web.Request) -> web.Response:
    return web.json_response({"method": request.method})


async def open_route(request: web.Request) -> web.Response:
    return web.json_response({"open": True})


class RoutesPlugin(BasePlugin):
    name = "ratelimit_test_routes"

    def setup(self, app: web.Application) -> None:
        app.router.add_get("/api/things/{id}", thing)
        app.router.add_post("/api/things/{id}", thing)
        app.router.add_route("*", "/api/any", anything)
        app.router.add_get("/open", open_route)
