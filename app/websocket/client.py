"""A Python client of `/ws` that recovers: what the browser module (`static/keel-ws.js`) does.

    async with KeelSocket("http://127.0.0.1:8080/ws") as socket:
        await socket.subscribe("items")
        async for event in socket:
            if isinstance(event, Reset):
                ...  # messages were missed and cannot be replayed: reload the items
            else:
                ...  # a Message: event.channel, event.data, event.offset

It keeps one connection open, reconnecting with exponential back-off and
jitter (to the next of several URLs, when given several), and resubscribes
every channel with `since`, so the server replays what was missed — on any
instance. Each message is yielded once and in order: one seen already is
dropped, and a gap in the offsets (the server's link to Redis was cut) is
filled by subscribing again with `since`. When the server cannot replay
(`recovered: false`), or cannot know (history off), a `Reset(channel)` is
yielded instead: the caller reloads what it built from that channel.

Events wait in a bounded queue (`queue_size`): a caller that stops reading
stops the socket being read, the server closes it (1013) once its own queue
is full, and the client comes back with `since` — memory stays bounded on
both sides and nothing is lost while the history holds it.

`publish()` and `presence()` wait (up to `reply_timeout`, then TimeoutError)
for a connection, then for the server's reply; a refusal raises `KeelError`
with the server's `code` (`disconnected` when the connection closed before
the reply came: the op may or may not have been done). Keel's own tests use
this client.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from app.core.background import BackgroundTask
from app.websocket.position import Position

log = logging.getLogger("keel.websocket.client")

_END = object()  # queued by close(): the iteration ends


@dataclass(frozen=True, slots=True)
class Message:
    channel: str
    data: Any
    offset: int | None = None  # None with history off
    epoch: str | None = None


@dataclass(frozen=True, slots=True)
class Reset:
    """Messages of `channel` were missed and cannot be replayed: reload what came from it."""

    channel: str


Event = Message | Reset


class KeelError(Exception):
    """The server refused an op (`code` as in the README's table), or the connection went."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass
class _Channel:
    position: Position | None = None
    started: bool = False  # subscribed on some connection: a later one may have missed some
    syncing: bool = False  # a subscribe is on its way
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    refused: KeelError | None = None


Reply = Callable[[dict[str, Any]], list[Event]]


class KeelSocket:
    def __init__(
        self,
        url: str | Sequence[str],
        *,
        session: aiohttp.ClientSession | None = None,
        min_delay: float = 0.25,
        max_delay: float = 10.0,
        heartbeat: float = 20.0,
        queue_size: int = 1000,
        reply_timeout: float = 10.0,
    ) -> None:
        self.urls = [url] if isinstance(url, str) else list(url)
        self.min_delay = min_delay
        self.max_delay = max_delay
        self.heartbeat = heartbeat
        self.reply_timeout = reply_timeout
        self.connects = 0  # connections made (the first included)
        self.replays = 0  # subscribes sent with `since`: replays asked for
        self._attempts = 0
        self._session = session
        self._own_session = session is None
        self._channels: dict[str, _Channel] = {}
        self._pending: dict[int, Reply] = {}
        self._refs = itertools.count(1)
        self._events: asyncio.Queue[object] = asyncio.Queue(queue_size)
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._connected = asyncio.Event()
        self._closing = False
        self._task = BackgroundTask("keel.websocket.client", self._run)

    async def __aenter__(self) -> KeelSocket:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        self._task.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    # --- what callers do ------------------------------------------------------------

    async def subscribe(self, channel: str) -> None:
        """Receive `channel`; returns once the server has confirmed it (KeelError if refused)."""
        state = self._channels.get(channel)
        if state is None:
            state = self._channels[channel] = _Channel()
            if self._ws is not None:
                # A connection that breaks meanwhile subscribes it on the next one.
                with contextlib.suppress(ConnectionError, aiohttp.ClientError):
                    await self._send_subscribe(self._ws, channel, state)
        await state.ready.wait()
        if state.refused is not None:
            raise state.refused

    async def unsubscribe(self, channel: str) -> None:
        if self._channels.pop(channel, None) is not None and self._ws is not None:
            await self._ask({"op": "unsubscribe", "channel": channel})

    async def publish(self, channel: str, data: Any) -> None:
        await self._ask({"op": "publish", "channel": channel, "data": data})

    async def presence(self, channel: str) -> int:
        """Subscribers of `channel` on every instance."""
        reply = await self._ask({"op": "presence", "channel": channel})
        return int(reply["subscribers"])

    def __aiter__(self) -> KeelSocket:
        return self

    async def __anext__(self) -> Event:
        event = await self._events.get()
        if event is _END:
            self._events.put_nowait(_END)  # for any other reader
            raise StopAsyncIteration
        assert isinstance(event, Message | Reset)
        return event

    async def close(self) -> None:
        """Close for good; iterating ends."""
        self._closing = True
        await self._task.stop()
        if self._own_session and self._session is not None:
            await self._session.close()
        with contextlib.suppress(asyncio.QueueFull):
            self._events.put_nowait(_END)
        if self._events.full():  # nobody reads: make room for the end
            self._events.get_nowait()
            self._events.put_nowait(_END)

    # --- requests -----------------------------------------------------------------------

    async def _ask(self, frame: dict[str, Any]) -> dict[str, Any]:
        async with asyncio.timeout(self.reply_timeout):
            await self._connected.wait()
            ws = self._ws
            assert ws is not None
            answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

            def settle(reply: dict[str, Any]) -> list[Event]:
                if not answer.done():
                    answer.set_result(reply)
                return []

            await self._send(ws, frame, settle)
            reply = await answer
        if reply["op"] == "error":
            raise KeelError(reply["code"], reply["message"])
        return reply

    async def _send(
        self, ws: aiohttp.ClientWebSocketResponse, frame: dict[str, Any], reply: Reply
    ) -> None:
        ref = next(self._refs)
        self._pending[ref] = reply
        await ws.send_str(orjson.dumps({**frame, "ref": ref}).decode())

    async def _send_subscribe(
        self, ws: aiohttp.ClientWebSocketResponse, channel: str, state: _Channel
    ) -> None:
        frame: dict[str, Any] = {"op": "subscribe", "channel": channel}
        if state.position is not None:
            frame["since"] = {"offset": state.position.offset, "epoch": state.position.epoch}
            self.replays += 1
        resuming = state.started
        state.syncing = True

        def subscribed(reply: dict[str, Any]) -> list[Event]:
            state.syncing = False
            if self._channels.get(channel) is not state:
                return []
            if reply["op"] == "error":
                if reply["code"] == "disconnected":
                    return []  # subscribed again on the next connection
                del self._channels[channel]
                state.refused = KeelError(reply["code"], reply["message"])
                state.ready.set()
                return []
            if "offset" in reply:
                state.position = Position(reply["offset"], reply["epoch"])
            state.started = True
            state.ready.set()
            # Not recovered, or not known to be: the caller must reload.
            return [Reset(channel)] if resuming and reply.get("recovered") is not True else []

        await self._send(ws, frame, subscribed)

    # --- the connection -------------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        while not self._closing:
            url = self.urls[self._attempts % len(self.urls)]
            self._attempts += 1
            try:
                assert self._session is not None
                async with self._session.ws_connect(url, heartbeat=self.heartbeat) as ws:
                    self.connects += 1
                    failures = 0
                    await self._serve(ws)
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                log.debug("websocket %s: %s", url, exc)
            finally:
                self._lost()
            if self._closing:
                return
            ceiling = min(self.max_delay, self.min_delay * 2**failures)
            failures += 1
            # Half fixed, half random: clients cut off together do not come back together.
            await asyncio.sleep(ceiling / 2 + random.random() * ceiling / 2)

    async def _serve(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._connected.set()
        for channel, state in list(self._channels.items()):
            await self._send_subscribe(ws, channel, state)
        while True:
            message = await ws.receive()
            if message.type is not aiohttp.WSMsgType.TEXT:
                return  # closed (1001: the server is shutting down; 1013: we were slow)
            for event in await self._receive(ws, orjson.loads(message.data)):
                await self._events.put(event)

    def _lost(self) -> None:
        self._ws = None
        self._connected.clear()
        pending, self._pending = self._pending, {}
        gone = {"op": "error", "code": "disconnected", "message": "the connection closed"}
        for reply in pending.values():
            reply(gone)

    async def _receive(
        self, ws: aiohttp.ClientWebSocketResponse, frame: dict[str, Any]
    ) -> list[Event]:
        if frame["op"] != "message":
            reply = self._pending.pop(frame.get("ref"), None)  # type: ignore[arg-type]
            return reply(frame) if reply is not None else []
        channel = frame["channel"]
        state = self._channels.get(channel)
        if state is None:
            return []
        if "offset" not in frame:
            return [Message(channel, frame["data"])]
        position = Position(frame["offset"], frame["epoch"])
        last = state.position
        events: list[Event] = []
        if last is not None and last.epoch == position.epoch:
            if position.offset <= last.offset:
                return []  # seen already
            if position.offset > last.offset + 1:
                # Missed some: the server replays them after `last` (this one included).
                if not state.syncing:
                    await self._send_subscribe(ws, channel, state)
                return []
        elif last is not None and not state.syncing:
            events.append(Reset(channel))  # a new epoch: the history was lost, and what it held
        state.position = position
        events.append(Message(channel, frame["data"], position.offset, position.epoch))
        return events
