"""`app[WEBSOCKET]`: WebSockets for plugin authors, and the state behind `/ws`.

In a plugin (with "websocket" enabled, and listed in the plugin's `optional`
or `requires` so that it is set up first)::

    from app.websocket import WEBSOCKET

    ws = app[WEBSOCKET]
    ws.allow_publish("chat.*")              # clients may publish on chat.<anything>
    ws.relay(store.events, "orders", render)  # every event of an EventHook, on a channel
    await ws.publish("orders", {"id": 7})   # from server code, any channel
    ws.hide("internal.*")                   # clients may not subscribe (nor count) there

`publish(channel, data)` serializes `data` once (ValueError when it is not
JSON, or the channel name is invalid) and hands the same bytes to every
subscriber: this instance's before it returns, the other instances' through
the bus. Server code may publish on any channel, `items` and `jobs` included;
clients only where `allow_publish` and `[websocket] publish_channels` say.
With history on, the publication goes through the channel's history first
(`history.py`), which gives it its offset.

A subscribe with history on is answered in three parts, with nothing
published meanwhile lost or sent twice (`recovery.py`): the subscription is
held (the bus receives the channel; its messages are kept aside), the
history is read (the latest position and, with `since`, what the client
missed), then the missed messages, the `ok` with the position and the held
messages after it are sent, and the subscription goes live.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

from aiohttp import web

from app.core.events import EventHook
from app.ratelimit.algorithm import gcra
from app.ratelimit.limits import parse_limit
from app.websocket import protocol
from app.websocket.bus import Bus, Deliver, MemoryBus
from app.websocket.channels import (
    SERVER_CHANNELS,
    ChannelPatterns,
    PublishPermissions,
    is_channel,
)
from app.websocket.connection import CLOSE_TIMEOUT, GOING_AWAY, Connection
from app.websocket.history import History
from app.websocket.hub import Hub
from app.websocket.memory_history import MemoryHistory
from app.websocket.position import Position
from app.websocket.presence import LocalPresence, Presence, PresenceUnavailable
from app.websocket.protocol import ProtocolError, Ref
from app.websocket.recovery import Recoveries, send_replay
from app.websocket.settings import WebSocketSettings

log = logging.getLogger("keel.websocket")

E = TypeVar("E")

# state() lists this many of the busiest channels (and counts them all).
STATE_CHANNELS = 50
# Settings a reload records but does not apply.
AT_RESTART = frozenset({"history_size", "history_ttl"})


# Makes the history, given where it delivers, the bus, history_size and history_ttl.
HistoryFactory = Callable[[Deliver, Bus, int, float], History]


def monotonic_us() -> int:
    return time.monotonic_ns() // 1000


def memory_history(deliver: Deliver, bus: Bus, size: int, ttl: float) -> History:
    return MemoryHistory(deliver, size, ttl)


class WebSocketService:
    def __init__(
        self,
        settings: WebSocketSettings,
        *,
        bus: Callable[[Deliver], Bus] = MemoryBus,
        history: HistoryFactory = memory_history,
        presence: Callable[[Hub], Presence] = LocalPresence,
        clock: Callable[[], int] = monotonic_us,
    ) -> None:
        """`bus` makes the bus that carries publications between instances, given where
        it delivers them here (the in-process bus by default); `history` the channels'
        history (when `history_size` > 0) and `presence` the subscriber counts."""
        self.settings = settings
        self.hub = Hub()
        self.bus = bus(self.hub.deliver)
        self.history: History | None = None
        if settings.history_size > 0:
            self.history = history(
                self.hub.deliver, self.bus, settings.history_size, settings.history_ttl
            )
        self.presence = presence(self.hub)
        self.permissions = PublishPermissions(settings.publish_channels)
        self.private = ChannelPatterns(settings.private_channels)
        self.publish_limit = parse_limit(settings.publish_limit)
        self._clock = clock
        self.closing = False
        self._all_gone = asyncio.Event()
        # Counted in ints and read when /metrics is scraped (metrics.py).
        self.received = 0
        self.replied = 0
        self.slow_closes = 0
        self.recoveries = Recoveries()

    # --- for plugin authors ---------------------------------------------------------

    async def publish(self, channel: str, data: Any) -> None:
        """Send `data` to every subscriber of `channel` on every instance."""
        if not is_channel(channel):
            raise ValueError(f"invalid channel name {channel!r}: 1-100 characters of [a-z0-9._-]")
        try:
            payload = protocol.message(channel, data)
        except TypeError as exc:
            raise ValueError(f"cannot publish on {channel}: {exc}") from None
        if self.history is not None:
            await self.history.publish(channel, payload)
        else:
            await self.bus.publish(channel, payload)

    def allow_publish(self, pattern: str) -> None:
        """Let clients publish on the channels matching `pattern` (e.g. "chat.*")."""
        self.permissions.allow(pattern)

    def hide(self, pattern: str) -> None:
        """Keep clients from subscribing to (or counting) the channels matching `pattern`."""
        self.private.add(pattern)

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

    async def subscribe(
        self, connection: Connection, channel: str, ref: Ref = None, since: Position | None = None
    ) -> bytes | None:
        """Subscribe, once the channel is received from every instance reachable; returns
        the `ok` to send (None: with history on, it was sent, between replay and live)."""
        self._check_visible(channel, ref, "subscribe to")
        history = self.history
        if history is None:
            await self._subscribe_live(connection, channel, ref)
            if since is None:
                return protocol.ok(ref)
            self.recoveries.count(False)  # no history: nothing can be recovered
            return protocol.subscribed(ref, None, False)
        if since is None and channel in connection.subscriptions:
            return protocol.ok(ref)  # live already; a position now could be behind its messages
        if channel not in connection.subscriptions:
            self._check_room(connection, ref)
        if self.hub.hold(connection, channel):
            self.bus.watch(channel)
        self.presence.changed()
        try:
            await self.bus.ready(channel)
            replay = await history.read(channel, since)
            # What was published before the read is held by now, to be sorted out below.
            await self.bus.caught_up()
        except BaseException:
            self.unsubscribe(connection, channel)  # no half subscription left behind
            raise
        held = self.hub.release(connection, channel)
        if held is None:  # it went meanwhile
            return protocol.ok(ref)
        if since is not None:
            self.recoveries.count(bool(replay.recovered))
        self.replied += send_replay(connection, replay, ref, held)
        return None

    async def _subscribe_live(self, connection: Connection, channel: str, ref: Ref) -> None:
        if channel not in connection.subscriptions:
            self._check_room(connection, ref)
            if self.hub.subscribe(connection, channel):
                self.bus.watch(channel)
            self.presence.changed()
        await self.bus.ready(channel)

    def _check_room(self, connection: Connection, ref: Ref) -> None:
        limit = self.settings.max_subscriptions
        if len(connection.subscriptions) >= limit:
            raise ProtocolError(
                "too_many_subscriptions", f"at most {limit} subscriptions per connection", ref
            )

    def _check_visible(self, channel: str, ref: Ref, what: str) -> None:
        if self.private.matches(channel):
            raise ProtocolError("forbidden", f"cannot {what} {channel}: a private channel", ref)

    async def count(self, channel: str, ref: Ref = None) -> bytes:
        """The `presence` reply: subscribers of `channel` on every instance."""
        self._check_visible(channel, ref, "count the subscribers of")
        try:
            subscribers = await self.presence.count(channel)
        except PresenceUnavailable as exc:
            raise ProtocolError("unavailable", str(exc), ref) from None
        return protocol.presence(channel, ref, subscribers)

    def unsubscribe(self, connection: Connection, channel: str) -> None:
        if channel in connection.subscriptions:
            self.presence.changed()
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
        if connection.subscriptions:
            self.presence.changed()
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

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The bus, the history and presence: their connections and tasks."""
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(self.bus.running())
            if self.history is not None:
                await stack.enter_async_context(self.history.running())
            await stack.enter_async_context(self.presence.running())
            yield

    def configure(self, settings: WebSocketSettings) -> list[str]:
        """Apply a reloaded `[websocket]`; one line per change (limits apply to new sockets)."""
        old, self.settings = self.settings, settings
        self.permissions.configure(settings.publish_channels)
        self.private.configure(settings.private_channels)
        self.publish_limit = parse_limit(settings.publish_limit)
        return [
            f"websocket.{name}: {getattr(old, name)} -> {getattr(settings, name)}"
            + (" (applies at restart)" if name in AT_RESTART else "")
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
            "private_channels": list(self.private.patterns),
            "bus": self.bus.state(),
            "history": self.history.state() if self.history is not None else {"size": 0},
            "recoveries": self.recoveries.as_dict(),
            "presence": self.presence.state(),
        }


WEBSOCKET = web.AppKey("keel.websocket", WebSocketService)
