"""While an instance drains, every response closes its connection.

A load balancer keeps idle connections to each instance and sends the next
request on one of them (nginx's upstream `keepalive`). If the instance closed
such a connection just as nginx sent a request on it, the request was sent
and lost: nginx retries a sent request on another instance only when it is
idempotent, never a POST. So from the moment the drain begins every response
carries `Connection: close` and its connection is closed after it. Each idle
connection nginx holds is then either used once more (and closed by us, the
header saying so) or dropped by nginx when it has been idle for its
`keepalive_timeout`, which the deployment keeps shorter than
`[server] drain_delay`. By the time the listener closes, nginx holds no
connection to this instance that it could send a request on.

WebSocket handshakes are left alone: their `Connection: upgrade` is the
point, and the drain closes the sockets themselves with 1001.
"""

from __future__ import annotations

from aiohttp import hdrs, web

from app.core.lifecycle import Lifecycle, Phase


def close_if_draining(lifecycle: Lifecycle, response: web.StreamResponse) -> None:
    """`Connection: close` on `response` while the instance drains (called as every response
    is prepared, by the groundwork's hook: app/core/request_context.py)."""
    if lifecycle.phase is Phase.DRAINING and not isinstance(response, web.WebSocketResponse):
        response.force_close()
        response.headers[hdrs.CONNECTION] = "close"
