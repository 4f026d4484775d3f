"""The Redis bus: publications cross instances through Redis pub/sub.

One pub/sub connection per instance, subscribed to `<key_prefix>ws:<channel>`
for exactly the channels that have subscribers on this instance — SUBSCRIBE on
the first, UNSUBSCRIBE after the last — so Redis sends an instance only what
someone on it wants.

Publishing delivers locally first, then PUBLISHes, through the shared request
pipeline and the `redis` guard, the payload prefixed with this bus's origin
tag. Each listener drops its own instance's messages (they were delivered
already) and hands the others to the hub as they are: nothing is decoded.

With history on (`redis_history.py`), publications are PUBLISHed by the
history's script instead, tagged `#<offset>` rather than with an origin: every
instance delivers them, the publisher's own too, so each sees one channel in
Redis's (offset) order. `until_heard(channel, offset)` lets the publisher wait
until its own message has come back, so it still reaches local subscribers
before the publish returns; when the channel is not `receiving()` (the pub/sub
connection is down) the publisher delivers it here itself.

Two tasks share the connection: the listener reads (messages, subscription
replies, pongs), the syncer writes (SUBSCRIBE/UNSUBSCRIBE to match the
channels wanted, and a PING every `PING_INTERVAL`).

Degraded mode. When Redis stops answering — PUBLISH fails or the guard refuses
it, or nothing arrives on the pub/sub connection for `LISTEN_DEADLINE` — local
delivery goes on untouched; messages published meanwhile reach their own
instance only (pub/sub keeps nothing for later). The listener tries a new
connection every `RECONNECT_DELAY`; while the `redis` guard refuses, that
attempt is the guard's probe (made outside it): when it connects, the guard
lets calls through again (`probe_succeeded`). It resubscribes every channel
wanted at that moment. `healthy` is false, and readiness `degraded`, until both directions
work again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

from redis.asyncio.client import PubSub

from app.core.background import BackgroundTask
from app.core.guard import Refused, call_guarded
from app.core.outage import Outage
from app.redis import REDIS_ERRORS, RedisService
from app.websocket.bus import Bus, Deliver

log = logging.getLogger("keel.websocket")

PING_INTERVAL = 1.0  # seconds between pings on the pub/sub connection
LISTEN_DEADLINE = 3.0  # nothing heard for this long: the connection is lost
OPEN_TIMEOUT = 1.0  # for the first reply on a new connection
RECONNECT_DELAY = 0.5
READY_TIMEOUT = 1.0  # longest a subscriber waits for Redis to confirm a channel
STARTUP_WAIT = 1.0  # startup waits this long for the first connection, then degrades
ORIGIN_BYTES = 16
# History messages carry `#` and their offset (15 digits) where others carry an origin.
HISTORY_TAG = ord("#")
SYNC_PREFIX = b"keel-sync:"


class RedisBus(Bus):
    backend = "redis"

    def __init__(self, deliver: Deliver, redis: RedisService) -> None:
        super().__init__(deliver)
        self.redis = redis
        self.prefix = redis.key("ws", "")
        self._prefix_bytes = self.prefix.encode()
        self.origin = secrets.token_hex(ORIGIN_BYTES // 2).encode()
        self._wanted: set[str] = set()  # channels with local subscribers
        self._sent: set[str] = set()  # channels SUBSCRIBEd on the live connection
        self._unconfirmed: dict[str, int] = {}  # SUBSCRIBEs sent, replies not yet read
        self._waiters: dict[str, asyncio.Event] = {}
        # Per watched channel, the latest offset heard, and publishers waiting for theirs.
        self._heard: dict[str, int] = {}
        self._echoes: dict[str, list[tuple[int, asyncio.Future[None]]]] = {}
        # caught_up(): PINGs sent on the pub/sub connection, and who waits for their PONG.
        self._pings = 0
        self._catching_up: dict[int, asyncio.Future[None]] = {}
        self._pubsub: PubSub | None = None  # the live connection
        self._broken: BaseException | None = None  # a write on it failed
        self._stop = asyncio.Event()
        self._dirty = asyncio.Event()
        self._live = asyncio.Event()
        self.live_since: float | None = None  # monotonic time the live connection was made
        self._last_heard = 0.0
        self._last_ping = 0.0
        # The two directions fail apart: pub/sub (receiving) and PUBLISH (sending).
        self.outage = Outage("websocket bus: redis pub/sub", log)
        self.publishing = Outage("websocket bus: redis PUBLISH", log)
        self.published = 0
        self.received = 0
        self.unsent = 0
        self.connects = 0

    # --- the Bus interface ----------------------------------------------------------

    async def publish(self, channel: str, payload: bytes) -> None:
        self.deliver(channel, payload)
        batch = self.redis.batch
        if batch is None:  # not started, or stopping
            self.unsent += 1
            return
        key, message = self.prefix + channel, self.origin + payload
        try:
            await call_guarded(
                self.redis.guard, lambda: batch.execute("PUBLISH", key, message), REDIS_ERRORS
            )
        except Refused:
            self.unsent += 1
            return
        except REDIS_ERRORS as exc:
            self.unsent += 1
            self.publishing.failed(exc, "delivering locally only")
            return
        self.published += 1
        self.publishing.recovered()

    def watch(self, channel: str) -> None:
        self._wanted.add(channel)
        self._dirty.set()

    def unwatch(self, channel: str) -> None:
        self._wanted.discard(channel)
        self._heard.pop(channel, None)
        self._dirty.set()

    def receiving(self, channel: str) -> bool:
        """Does Redis send `channel` here now (pub/sub connected, subscription confirmed)?"""
        return self._pubsub is not None and self._confirmed(channel)

    async def until_heard(self, channel: str, offset: int) -> None:
        """Return once the history message `offset` of `channel` came back from Redis (at
        once when this instance does not receive the channel; at most `READY_TIMEOUT`)."""
        if not self._confirmed(channel) or self._heard.get(channel, 0) >= offset:
            return
        echo = asyncio.get_running_loop().create_future()
        self._echoes.setdefault(channel, []).append((offset, echo))
        try:
            async with asyncio.timeout(READY_TIMEOUT):
                await echo
        except TimeoutError:
            return
        finally:
            waiting = self._echoes.get(channel)
            if waiting is not None and (offset, echo) in waiting:
                waiting.remove((offset, echo))
                if not waiting:
                    del self._echoes[channel]

    async def caught_up(self) -> None:
        """A PING on the pub/sub connection: Redis answers it after every message it
        published before it saw the PING, and the listener reads in order."""
        pubsub = self._pubsub
        if pubsub is None:
            return
        self._pings += 1
        token = self._pings
        pong = asyncio.get_running_loop().create_future()
        self._catching_up[token] = pong
        try:
            await pubsub.ping(SYNC_PREFIX + str(token).encode())
            async with asyncio.timeout(READY_TIMEOUT):
                await pong
        except (TimeoutError, *REDIS_ERRORS):
            return  # the listener notices a broken connection; the caller goes on
        finally:
            self._catching_up.pop(token, None)

    def _pong(self, data: bytes) -> None:
        if not data.startswith(SYNC_PREFIX) or not self._catching_up:
            return
        answered = int(data[len(SYNC_PREFIX) :])
        for token in [t for t in self._catching_up if t <= answered]:
            pong = self._catching_up.pop(token)
            if not pong.done():
                pong.set_result(None)

    def _hear(self, channel: str, offset: int) -> None:
        self._heard[channel] = offset
        waiting = self._echoes.get(channel)
        if waiting is None:
            return
        for expected, echo in waiting:
            # Below: an epoch began since (offsets restarted); it will not come back.
            if expected <= offset and not echo.done():
                echo.set_result(None)

    async def ready(self, channel: str) -> None:
        if self._pubsub is None or channel not in self._wanted or self._confirmed(channel):
            return
        waiter = self._waiters.setdefault(channel, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(READY_TIMEOUT):
                await waiter.wait()

    @property
    def healthy(self) -> bool:
        return self._pubsub is not None and self._guard_lets_through()

    @property
    def problem(self) -> str:
        if self._pubsub is None:
            return f"redis pub/sub unreachable ({self.last_error or 'connecting'})"
        if not self._guard_lets_through():
            return f"redis breaker {self.redis.guard.state}: PUBLISH refused"
        return ""

    @property
    def last_error(self) -> str:
        return self.outage.reason

    def _guard_lets_through(self) -> bool:
        return self.redis.guard.state not in ("open", "forced_open")

    def state(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "healthy": self.healthy,
            "problem": self.problem,
            "connected": self._pubsub is not None,
            "redis_channels": len(self._sent),
            "published": self.published,
            "received": self.received,
            "unsent": self.unsent,
            "connects": self.connects,
            "last_error": self.last_error,
            "outage_since": self.outage.since,
        }

    def subscribed(self) -> set[str]:
        """The channels Redis has confirmed on the live connection."""
        return {c for c in self._sent if self._confirmed(c)}

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        self._stop.clear()
        tasks = [
            BackgroundTask("keel.websocket.bus.listen", self._listen),
            BackgroundTask("keel.websocket.bus.sync", self._sync),
        ]
        for task in tasks:
            task.start()
        with contextlib.suppress(TimeoutError):
            # Readiness is right from the start; an outage at startup degrades.
            async with asyncio.timeout(STARTUP_WAIT):
                await self._live.wait()
        try:
            yield
        finally:
            self._stop.set()
            self._dirty.set()
            await asyncio.gather(*(task.stop() for task in tasks))

    # --- the listener: one connection at a time -------------------------------------

    async def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                await self._session()
                return  # stopped
            except REDIS_ERRORS as exc:
                self._lost(exc)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(RECONNECT_DELAY):
                    await self._stop.wait()

    async def _session(self) -> None:
        client = self.redis.client
        if client is None:
            raise ConnectionError("the redis client is closed")
        pubsub = client.pubsub()
        try:
            try:
                await call_guarded(self.redis.guard, lambda: self._open(pubsub), REDIS_ERRORS)
            except Refused:
                # While the guard refuses, opening this connection is its probe: every
                # instance hears Redis again within a reconnect, and so do its users.
                await self._open(pubsub)
                self.redis.guard.probe_succeeded()
            self._go_live(pubsub)
            await self._receive(pubsub)
        finally:
            self._end(pubsub)
            with contextlib.suppress(*REDIS_ERRORS):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _open(self, pubsub: PubSub) -> None:
        channels = sorted(self._wanted)
        self._sent = set(channels)
        self._unconfirmed = dict.fromkeys(channels, 1)
        if channels:
            await pubsub.subscribe(*(self.prefix + c for c in channels))
        else:
            await pubsub.ping()
        # The first reply proves that Redis answers on this connection.
        message = await pubsub.get_message(timeout=OPEN_TIMEOUT)
        if message is None:
            raise TimeoutError(f"no answer on a new pub/sub connection within {OPEN_TIMEOUT} s")
        self._handle(message)

    def _go_live(self, pubsub: PubSub) -> None:
        self._pubsub = pubsub
        self._broken = None
        self._last_heard = self._last_ping = self.live_since = time.monotonic()
        self.connects += 1
        self.outage.recovered(f"{len(self._sent)} channel(s) subscribed")
        self._live.set()
        self._dirty.set()  # channels wanted while connecting

    async def _receive(self, pubsub: PubSub) -> None:
        while not self._stop.is_set():
            message = await pubsub.get_message(timeout=PING_INTERVAL)
            now = time.monotonic()
            if message is not None:
                self._last_heard = now
                self._handle(message)
            if self._broken is not None:
                raise self._broken
            if now - self._last_heard > LISTEN_DEADLINE:
                raise TimeoutError(f"no answer on the pub/sub connection for {LISTEN_DEADLINE} s")

    def _handle(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "message":
            data: bytes = message["data"]
            if data[:ORIGIN_BYTES] == self.origin:
                return  # ours: delivered here when it was published
            self.received += 1
            channel = message["channel"][len(self._prefix_bytes) :].decode()
            if data[0] == HISTORY_TAG:
                self._hear(channel, int(data[1:ORIGIN_BYTES]))
            self.deliver(channel, data[ORIGIN_BYTES:])
        elif kind == "subscribe":
            channel = message["channel"][len(self._prefix_bytes) :].decode()
            left = self._unconfirmed.get(channel, 0) - 1
            if left > 0:
                self._unconfirmed[channel] = left
                return
            self._unconfirmed.pop(channel, None)
            if channel in self._sent and (waiter := self._waiters.pop(channel, None)):
                waiter.set()
        elif kind == "pong":
            self._pong(message["data"])

    def _confirmed(self, channel: str) -> bool:
        return channel in self._sent and channel not in self._unconfirmed

    def _end(self, pubsub: PubSub) -> None:
        if self._pubsub is not None and self._pubsub is not pubsub:
            return
        self._pubsub = None
        self._broken = None
        self.live_since = None
        self._live.clear()
        self._sent = set()
        self._unconfirmed = {}
        for waiter in self._waiters.values():
            waiter.set()  # nobody waits for a connection that is gone
        self._waiters.clear()
        self._heard.clear()
        waiting = [echo for echoes in self._echoes.values() for _, echo in echoes]
        waiting += self._catching_up.values()
        for future in waiting:
            if not future.done():
                future.set_result(None)

    def _lost(self, exc: BaseException) -> None:
        self.outage.failed(exc, "messages reach this instance's subscribers only until it is back")

    # --- the syncer: subscriptions and pings ---------------------------------------

    async def _sync(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(PING_INTERVAL):
                    await self._dirty.wait()
            self._dirty.clear()
            pubsub = self._pubsub
            if pubsub is None or self._stop.is_set():
                continue
            try:
                await self._apply(pubsub)
            except REDIS_ERRORS as exc:
                if pubsub is self._pubsub:
                    self._broken = exc  # the listener ends this connection

    async def _apply(self, pubsub: PubSub) -> None:
        # Bookkeeping happens before each write: a write never races a new connection.
        add = self._wanted - self._sent
        drop = self._sent - self._wanted
        if add:
            self._sent |= add
            for channel in add:
                # Counted, not flagged: SUBSCRIBE, UNSUBSCRIBE, SUBSCRIBE in a row
                # is confirmed by the last reply, not by the first.
                self._unconfirmed[channel] = self._unconfirmed.get(channel, 0) + 1
            await pubsub.subscribe(*(self.prefix + c for c in sorted(add)))
        if drop:
            self._sent -= drop
            await pubsub.unsubscribe(*(self.prefix + c for c in sorted(drop)))
        now = time.monotonic()
        if now - self._last_ping >= PING_INTERVAL:
            self._last_ping = now
            await pubsub.ping()
