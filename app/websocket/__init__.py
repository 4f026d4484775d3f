"""WebSockets: the `/ws` protocol, channels, connections and the bus between instances.

    channels.py    channel names and the patterns clients may publish on (pure)
    protocol.py    client frames in, server messages out (pure)
    frames.py      the bytes of a server text frame, built once per message (pure)
    connection.py  one client socket: a bounded send queue, closing with a code
    hub.py         this instance's connections and the channels they subscribe to
    bus.py         the Bus interface and the in-process bus (the embedded default)
    redis_bus.py   the Redis pub/sub bus: one connection, only the channels wanted here
    service.py     `app[WEBSOCKET]`: publish from server code, permissions, state
    endpoint.py    the `GET /ws` handler: handshake checks and the op dispatch
    settings.py    `[websocket]`
    metrics.py     the `keel_ws_*` collectors

The `websocket` plugin (`app/plugins/websocket.py`) wires them together.
"""

from app.websocket.service import WEBSOCKET, WebSocketService
from app.websocket.settings import WebSocketSettings

__all__ = ["WEBSOCKET", "WebSocketService", "WebSocketSettings"]
