"""`GET /ws`: the handshake checks, then one loop per client answering its ops.

Handshake. A browser always sends `Origin`; it must be the page's own origin
(its host is the `Host` the client connected to) or one of `[websocket]
allowed_origins` ("*" = any), else 403 `forbidden`. Without this check any web
page could open a socket as its visitors (cross-site WebSocket hijacking).
Clients that send no `Origin` are not browsers and are not checked.

Then, per client frame, exactly one reply: `ok`, `pong` or `error` (a
malformed frame or a refused op gets an `error`; the connection stays open).
aiohttp enforces the rest: a frame over `max_message_size` closes the
connection with 1009; pings every `heartbeat` seconds close a dead peer.
Compression is off: a frame is built once and the same bytes go to every
subscriber (see `frames.py`).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import WSMsgType, hdrs, web

from app.core.lifecycle import Lifecycle, Phase
from app.errors import error_response
from app.websocket import protocol
from app.websocket.connection import CLOSE_TIMEOUT, Connection
from app.websocket.frames import text_frame
from app.websocket.protocol import (
    Ping,
    Presence,
    ProtocolError,
    Publish,
    Subscribe,
    Unsubscribe,
)
from app.websocket.service import WebSocketService

BINARY_REFUSED = protocol.error("bad_frame", "binary frames are not supported: send JSON text")


def origin_allowed(origin: str | None, host: str | None, allowed: tuple[str, ...]) -> bool:
    """May a handshake with this `Origin` header, to this `Host`, go ahead?"""
    if origin is None or "*" in allowed or origin in allowed:
        return True
    try:
        netloc = urlsplit(origin).netloc
    except ValueError:
        return False
    return bool(netloc) and host is not None and netloc.lower() == host.lower()


class Endpoint:
    """The `/ws` handler."""

    def __init__(self, service: WebSocketService, lifecycle: Lifecycle) -> None:
        self.service = service
        self.lifecycle = lifecycle
        self._fell_behind = service.fell_behind  # one bound method for every connection

    async def handle(self, request: web.Request) -> web.StreamResponse:
        service = self.service
        settings = service.settings
        origin = request.headers.get(hdrs.ORIGIN)
        if not origin_allowed(origin, request.host, settings.allowed_origins):
            return error_response(
                403,
                "forbidden",
                f"origin {origin} may not open a WebSocket here ([websocket] allowed_origins)",
            )
        # Draining (a load balancer is taking this instance out) or closing: a socket
        # opened now would be closed with 1001 moments later; reconnect elsewhere now.
        if service.closing or self.lifecycle.phase is Phase.DRAINING:
            return error_response(
                503, "unavailable", "shutting down; reconnect", headers={"Retry-After": "1"}
            )
        ws = web.WebSocketResponse(
            max_msg_size=settings.max_message_size,
            heartbeat=settings.heartbeat or None,
            compress=False,
            timeout=CLOSE_TIMEOUT,
            # A close frame from the client ends the loop; Connection.finish answers it,
            # or, when the close was ours, this is the answer and TCP is closed.
            autoclose=False,
        )
        if not ws.can_prepare(request).ok:
            return error_response(400, "bad_request", "GET /ws expects a WebSocket handshake")
        writer = await ws.prepare(request)
        # From here on this is a connection, not a request: the drain closes it (1001).
        self.lifecycle.untrack(request)
        try:
            connection = Connection(
                ws,
                request,
                writer,
                send_queue=settings.send_queue,
                on_fall_behind=self._fell_behind,
            )
        except ConnectionResetError:
            return ws
        service.connect(connection)
        try:
            # The loop is inline, with receive() rather than `async for`: every
            # coroutine frame here lives as long as the socket, per socket.
            while True:
                message = await ws.receive()
                if message.type is WSMsgType.TEXT:
                    service.received += 1
                    reply = await self._answer(connection, message.data)
                    if reply is None:  # sent already (a subscribe's replay and ok)
                        continue
                elif message.type is WSMsgType.BINARY:
                    service.received += 1
                    reply = BINARY_REFUSED
                else:
                    # CLOSE (Connection.finish answers it), or aiohttp closed the
                    # socket: ERROR (1009 for a frame too large), CLOSING, CLOSED.
                    break
                if connection.send(text_frame(reply)):
                    service.replied += 1
        finally:
            await service.disconnect(connection)
        return ws

    async def _answer(self, connection: Connection, text: str) -> bytes | None:
        service = self.service
        try:
            match protocol.parse(text):
                case Subscribe(channel, ref, since):
                    return await service.subscribe(connection, channel, ref, since)
                case Unsubscribe(channel, ref):
                    service.unsubscribe(connection, channel)
                    return protocol.ok(ref)
                case Publish(channel, data, ref):
                    await service.client_publish(connection, channel, data, ref)
                    return protocol.ok(ref)
                case Presence(channel, ref):
                    return await service.count(channel, ref)
                case Ping(ref):
                    return protocol.pong(ref)
        except ProtocolError as exc:
            return exc.payload
        raise AssertionError("unreachable: parse returns one of the commands above")
