"""`GET /static/keel-ws.js`: the browser client (`static/keel-ws.js`), served as is.

Read once when the app is built; an ES module, so a page imports it with
`import { KeelSocket } from "/static/keel-ws.js"` from its own origin (no
CDN, no build step). `ETag` and `Cache-Control: no-cache` let a browser keep
it and revalidate cheaply.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from aiohttp import web

BROWSER_CLIENT_PATH = "/static/keel-ws.js"
SOURCE = Path(__file__).resolve().parents[2] / "static" / "keel-ws.js"

BROWSER_CLIENT_OPENAPI: dict[str, Any] = {
    BROWSER_CLIENT_PATH: {
        "get": {
            "operationId": "websocketBrowserClient",
            "tags": ["websocket"],
            "summary": "The browser client of /ws: an ES module (KeelSocket)",
            "description": (
                "Reconnects with back-off and jitter, resubscribes with `since`, and tells"
                " the page when a channel could not be recovered (see the README, WebSocket)."
            ),
            "responses": {
                "200": {
                    "description": "The module",
                    "content": {"text/javascript": {"schema": {"type": "string"}}},
                },
                "304": {"description": "Not modified (If-None-Match)"},
            },
        }
    }
}


class BrowserClient:
    def __init__(self, source: Path = SOURCE) -> None:
        self.body = source.read_bytes()
        self.etag = '"' + hashlib.sha256(self.body).hexdigest()[:20] + '"'

    async def handle(self, request: web.Request) -> web.Response:
        headers = {"ETag": self.etag, "Cache-Control": "no-cache"}
        if self.etag in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers=headers)
        return web.Response(
            body=self.body, content_type="text/javascript", charset="utf-8", headers=headers
        )
