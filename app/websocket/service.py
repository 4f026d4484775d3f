"""`app[WEBSOCKET]`: WebSockets for plugin authors, and the state behind `/ws`.

In a plugin (with "websocket" enabled, and listed in the plugin's `optional`
or `requires` so that it is set up first)::

    from app.websocket import WEBSOCKET

    ws = app[WEBSOCKET]
    ws.allow_publish("chat.*")              # clients may publish on chat.<anything>
    ws.relay(store.events, "orders", render)  # every event of an EventHook, on a channel
    await ws.publish("orders", {"id": 7})   # from server code, any channel

`publish(channel, data)` serializes `data` once (ValueError when it is not
JSON, or the channel name is invalid) and hands the same bytes to every
subscriber: this instance's before it returns, the other instances' through
the bus. Server code may publish on any channel, `items` and `jobs` included;
clients only where `allow_publish` and `[websocket] publish_channels` say.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from app.core.events import EventHook
from app.ratelimit.algorithm import gcra
from app.ratelimit.limits import parse_limit
from app.websocket import protocol
from app.websocket.bus import Bus, Deliver, MemoryBus
from app.websocket.channels import SERVER_CHANNELS, PublishPermissions, is_channel
from app.websocket.connection import CLOSE_TIMEOUT, GOING_AWAY, Connection
from app.websocket.hub import Hub
from app.websocket.protocol import ProtocolError, Ref
from app.websocket.settings import WebSocketSettings

log = logging.getLogger("keel.websocket")

E = TypeVar("E")

# state() lists this many of the busiest channels (and counts them all).
STATE_CHANNELS = 50


def monotonic_us() -> int:
    return time.monotonic_ns() // 1000


class WebSocketService:
    def __init__(
        self,
        settings: WebSocketSettings,
        *,
        bus: Callable[[Deliver], Bus] = MemoryBus,
        clock: Callable[[], int] = monotonic_us,
    ) -> None:
        """`bus` makes the bus that carries publications between instances, given where
        it delivers them here (the in-process bus by default)."""
        self.settings = settings
        self.hub = Hub()
        self.bus = bus(self.hub.deliver)
        self.permissions = PublishPermissions(settings.publish_channels)
        self.publish_limit = parse_limit(settings.publish_limit)
        self._clock = clock
        self.closing = False
        self._all_gone = asyncio.Event()
        # Counted in ints and read when /metrics is scraped (metrics.py).
        self.received = 0
        self.replied = 0
        self.slow_closes = 0

    # --- for plugin authors ---------------------------------------------------------

    async def publish(self, channel: str, data: Any) -> None:
        """Send `data` to every subscriber of `channel` on every instance."""
        if not is_channel(channel):
            raise ValueError(f"invalid channel name {channel!r}: 1-100 characters of [a-z0-9._-]")
        try:
            payload = protocol.message(channel, data)
        except TypeError as exc:
            raise ValueError(f"cannot publish on {channel}: {exc}") from None
        await self.bus.publish(channel, payload)

    def allow_publish(self, pattern: str) -> None:
        """Let clients publish on the channels matching `pattern` (e.g. "chat.*")."""
        self.permissions.allow(pattern)

    def relay(self, hook: EventHook[E], channel: str, render: Callable[[E], Any]) -> None:
        """Publish `render(event)` on `channel` for every event `hook` emits."""

        async def forward(event: E) -> None:
            await self.publish(channel, render(event))

        hook.subscribe(forward)

    # --- for the endpoint -----------------------------------------------------------

    def connect(self, connection: Connection) -> None:
        self.hub.add(connection)
        if self.closing:  # opened while the drain was closing the others
            connection.close(GOING_AWAY, "server shutting down")

    async def subscribe(self, connection: Connection, channel: str, ref: Ref = None) -> None:
        """Subscribe; returns once the channel is received from every instance reachable."""
        if channel not in connection.subscriptions:
            limit = self.settings.max_subscriptions
            if len(connection.subscriptions) >= limit:
                raise ProtocolError(
                    "too_many_subscriptions", f"at most {limit} subscriptions per connection", ref
                )
            if self.hub.subscribe(connection, channel):
                self.bus.watch(channel)
        await self.bus.ready(channel)

    def unsubscribe(self, connection: Connection, channel: str) -> None:
        if self.hub.unsubscribe(connection, channel):
            self.bus.unwatch(channel)

    async def client_publish(
        self, connection: Connection, channel: str, data: Any, ref: Ref = None
    ) -> None:
        """A client's publish: checked against the permissions and its publish budget."""
        if not self.permissions.allows(channel):
            why = "a server channel" if channel in SERVER_CHANNELS else "not open to clients"
            raise ProtocolError("forbidden", f"cannot publish on {channel}: {why}", ref)
        limit = self.publish_limit
        decision, booked = gcra(connection.tat, self._clock(), limit.interval_us, limit.horizon_us)
        if booked is None:
            raise ProtocolError(
                "rate_limited",
                f"publish limit {limit} per connection; retry in {decision.reset_us / 1e6:.3f} s",
                ref,
            )
        connection.tat = booked
        await self.publish(channel, data)

    def fell_behind(self, connection: Connection) -> None:
        self.slow_closes += 1
        log.info(
            "closing a websocket with 1013: %d frames queued and its socket is full",
            connection.queued,
        )

    async def disconnect(self, connection: Connection) -> None:
        for channel in self.hub.remove(connection):
            self.bus.unwatch(channel)
        try:
            await connection.finish()
        finally:
            if self.closing and not self.hub.connections:
                self._all_gone.set()

    async def close_all(self, code: int = GOING_AWAY, reason: str = "server shutting down") -> int:
        """Close every client with `code`; wait (boundedly) for them to go. Returns how many."""
        self.closing = True
        connections = list(self.hub.connections)
        for connection in connections:
            connection.close(code, reason)
        if self.hub.connections:
            # Each handler ends when its client answers, or CLOSE_TIMEOUT cuts it off.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_TIMEOUT + 1):
                    await self._all_gone.wait()
        return len(connections)

    # --- operating ------------------------------------------------------------------

    def configure(self, settings: WebSocketSettings) -> list[str]:
        """Apply a reloaded `[websocket]`; one line per change (limits apply to new sockets)."""
        old, self.settings = self.settings, settings
        self.permissions.configure(settings.publish_channels)
        self.publish_limit = parse_limit(settings.publish_limit)
        return [
            f"websocket.{name}: {getattr(old, name)} -> {getattr(settings, name)}"
            for name in settings.__dataclass_fields__
            if getattr(old, name) != getattr(settings, name)
        ]

    def state(self) -> dict[str, Any]:
        channels = self.hub.channels()
        busiest = sorted(channels.items(), key=lambda item: (-item[1], item[0]))[:STATE_CHANNELS]
        return {
            "connections": len(self.hub.connections),
            "channel_count": len(channels),
            "channels": dict(busiest),
            "queued_frames": sum(c.queued for c in self.hub.connections),
            "messages_in": self.received,
            "messages_out": self.hub.delivered + self.replied,
            "slow_client_closes": self.slow_closes,
            "dropped_frames": self.hub.dropped,
            "publish_channels": list(self.permissions.patterns),
            "bus": self.bus.state(),
        }


WEBSOCKET = web.AppKey("keel.websocket", WebSocketService)
