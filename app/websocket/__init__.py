"""WebSockets: the `/ws` protocol, channels, connections and the bus between instances.

    channels.py    channel names and the patterns clients may publish on (pure)
    protocol.py    client frames in, server messages out (pure)
    frames.py      the bytes of a server text frame, built once per message (pure)
    connection.py  one client socket: a bounded send queue, closing with a code
    hub.py         this instance's connections and the channels they subscribe to
    bus.py         the Bus interface and the in-process bus (the embedded default)
    redis_bus.py   the Redis pub/sub bus: one connection, only the channels wanted here
    position.py    a message's offset and epoch, written into its bytes once (pure)
    history.py     the History interface: offsets, epochs, what a `since` recovers
    memory_history.py  the in-process history (the embedded default)
    redis_history.py   the Redis history: one script numbers, keeps and publishes
    held.py        publications held while Redis cannot number them, sent once it can
    recovery.py    a subscribe's replay, then the messages held while it was read
    presence.py    subscriber counts: the interface and the one-instance count
    redis_presence.py  counts reported to Redis by every instance, summed
    service.py     `app[WEBSOCKET]`: publish from server code, permissions, state
    endpoint.py    the `GET /ws` handler: handshake checks and the op dispatch
    browser_client.py  `GET /static/keel-ws.js`: the browser client, served
    client.py      the Python client that reconnects and recovers (KeelSocket)
    settings.py    `[websocket]`
    metrics.py     the `keel_ws_*` collectors

The `websocket` plugin (`app/plugins/websocket.py`) wires them together.
"""

from app.websocket.service import WEBSOCKET, WebSocketService
from app.websocket.settings import WebSocketSettings

__all__ = ["WEBSOCKET", "WebSocketService", "WebSocketSettings"]
