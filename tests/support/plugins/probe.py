"""`tests.support.plugins.probe:ProbePlugin`: routes that exercise the core from outside.

- `GET /test/slow?seconds=S` answers after S seconds (shutdown drains it).
- `POST /test/echo` reads the JSON body through `read_json` and returns it.
- `GET /test/items/{id}` a templated route (metrics must label the template).
- `GET /test/raise/{name}` raises the named `app.errors` class (or `boom`: a bug).
- `GET /test/log` logs at debug and info level (SIGHUP level test).
- `GET /test/ws` a WebSocket that answers each text frame with the same text.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from app import errors
from app.api.json_body import read_json
from app.plugins import BasePlugin, Readiness

log = logging.getLogger("tests.probe")


class ProbePlugin(BasePlugin):
    name = "probe"
    readiness_status: Readiness = Readiness()

    def setup(self, app: web.Application) -> None:
        app.router.add_get("/test/slow", self.slow)
        app.router.add_post("/test/echo", self.echo)
        app.router.add_get("/test/items/{id}", self.item)
        app.router.add_get("/test/raise/{name}", self.raise_named)
        app.router.add_get("/test/log", self.log_lines)
        app.router.add_get("/test/ws", self.echo_socket)

    async def slow(self, request: web.Request) -> web.Response:
        seconds = float(request.query.get("seconds", "1"))
        await asyncio.sleep(seconds)
        return web.json_response({"slept": seconds})

    async def echo(self, request: web.Request) -> web.Response:
        return web.json_response({"echo": await read_json(request)})

    async def item(self, request: web.Request) -> web.Response:
        return web.json_response({"id": request.match_info["id"]})

    async def raise_named(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name == "boom":
            raise RuntimeError("secret internal detail")
        cls = getattr(errors, name)
        if issubclass(cls, errors._RetryLater):
            raise cls(f"{name} raised", retry_after=2.5)
        raise cls(f"{name} raised", details=[{"field": "x", "why": "because"}])

    async def log_lines(self, request: web.Request) -> web.Response:
        log.debug("probe debug line")
        log.info("probe info line")
        return web.json_response({"logged": True})

    async def echo_socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            await ws.send_str(message.data)
        return ws

    async def readiness(self) -> Readiness:
        return self.readiness_status

    def openapi_paths(self) -> dict[str, Any]:
        ok = {"responses": {"200": {"description": "ok"}}}
        return {
            "/test/slow": {"get": ok},
            "/test/echo": {"post": ok},
            "/test/items/{id}": {
                "get": {
                    **ok,
                    "parameters": [
                        {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
                    ],
                }
            },
            "/test/raise/{name}": {
                "get": {
                    **ok,
                    "parameters": [
                        {
                            "name": "name",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ],
                }
            },
            "/test/log": {"get": ok},
            "/test/ws": {"get": ok},
        }
