"""This instance's connections and, per channel, the connections subscribed to it.

The hub is where a publication meets sockets: `deliver(channel, payload)`
frames the serialized message once and hands the same bytes to every local
subscriber (`Connection.send` never awaits, so a slow socket costs the others
nothing). It also says when a channel gains its first local subscriber or
loses its last, which is when the bus starts or stops receiving it.

A subscription can be held: while a subscribe reads the channel's history,
the connection counts as a subscriber (the bus receives the channel) but its
messages are kept aside, to be sent after the replayed ones (`hold`, then
`release`). Checking for held subscriptions costs one test of an empty dict
per message, not per subscriber.
"""

from __future__ import annotations

from app.websocket.connection import Connection
from app.websocket.frames import text_frame


class Hub:
    def __init__(self) -> None:
        self.connections: set[Connection] = set()
        self._channels: dict[str, set[Connection]] = {}
        # channel -> connection -> the payloads held back for it, in order
        self._held: dict[str, dict[Connection, list[bytes]]] = {}
        # Read at scrape time by the metrics collector: no per-message metric calls.
        self.delivered = 0
        self.dropped = 0

    def add(self, connection: Connection) -> None:
        self.connections.add(connection)

    def remove(self, connection: Connection) -> list[str]:
        """Forget `connection`; returns the channels it was the last local subscriber of."""
        self.connections.discard(connection)
        channels = connection.subscriptions.copy()
        return [channel for channel in channels if self.unsubscribe(connection, channel)]

    def subscribe(self, connection: Connection, channel: str) -> bool:
        """Add a subscription; True when `channel` had no local subscriber before."""
        if channel in connection.subscriptions:
            return False
        connection.subscriptions.append(channel)
        subscribers = self._channels.get(channel)
        if subscribers is None:
            self._channels[channel] = {connection}
            return True
        subscribers.add(connection)
        return False

    def unsubscribe(self, connection: Connection, channel: str) -> bool:
        """Drop a subscription; True when it was `channel`'s last local subscriber."""
        if channel in connection.subscriptions:
            connection.subscriptions.remove(channel)
        held = self._held.get(channel)
        if held is not None and held.pop(connection, None) is not None:
            if not held:
                del self._held[channel]
            return channel not in self._channels and channel not in self._held
        subscribers = self._channels.get(channel)
        if subscribers is None or connection not in subscribers:
            return False
        subscribers.discard(connection)
        if subscribers:
            return False
        del self._channels[channel]
        return channel not in self._held

    def hold(self, connection: Connection, channel: str) -> bool:
        """Subscribe (or re-subscribe) with messages held back until `release`; True when
        `channel` had no local subscriber before."""
        first = channel not in self._channels and channel not in self._held
        if channel in connection.subscriptions:
            subscribers = self._channels.get(channel)
            if subscribers is not None:
                subscribers.discard(connection)
                if not subscribers:
                    del self._channels[channel]
        else:
            connection.subscriptions.append(channel)
        self._held.setdefault(channel, {})[connection] = []
        return first

    def release(self, connection: Connection, channel: str) -> list[bytes] | None:
        """Deliver to `connection` from now on; the payloads held meanwhile, in order
        (None when the subscription ended meanwhile)."""
        held = self._held.get(channel)
        if held is None or (payloads := held.pop(connection, None)) is None:
            return None
        if not held:
            del self._held[channel]
        self._channels.setdefault(channel, set()).add(connection)
        return payloads

    def subscribers(self, channel: str) -> int:
        return len(self._channels.get(channel, ())) + len(self._held.get(channel, ()))

    def channels(self) -> dict[str, int]:
        """Every channel with local subscribers, and how many."""
        counts = {name: len(subscribers) for name, subscribers in self._channels.items()}
        for name, held in self._held.items():
            counts[name] = counts.get(name, 0) + len(held)
        return counts

    def deliver(self, channel: str, payload: bytes) -> int:
        """Send one serialized message to every local subscriber of `channel`; how many took it."""
        if self._held and (held := self._held.get(channel)):
            for waiting in held.values():
                waiting.append(payload)
        subscribers = self._channels.get(channel)
        if not subscribers:
            return 0
        frame = text_frame(payload)
        sent = 0
        for connection in subscribers:  # send() never changes the set
            if connection.send(frame):
                sent += 1
        self.delivered += sent
        self.dropped += len(subscribers) - sent
        return sent
