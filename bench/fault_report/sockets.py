"""WebSocket load: publishers on a chat channel and subscribers that come back when cut off.

Everything goes through nginx (`/ws`), as a browser's socket would. A
publisher sends `{"op": "publish", ...}` with a `ref` and counts the message
published once the server answered `ok`; at that moment each subscriber's
connection count is noted, so a message that reaches a subscriber on a later
connection is known to have come by recovery. A subscriber that loses its
connection connects again (with back-off) and subscribes again.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from typing import Any

import aiohttp

from bench.fault_report.ledger import Ledger, Published, Received

REPLY_TIMEOUT = 5.0
HEARTBEAT = 5.0


class Subscriber:
    def __init__(self, name: str, url: str, channel: str, ledger: Ledger) -> None:
        self.name = name
        self.url = url
        self.channel = channel
        self.ledger = ledger
        self.connections = 0
        self.subscribed = asyncio.Event()

    async def run(self, session: aiohttp.ClientSession, stop: asyncio.Event) -> None:
        failures = 0
        while not stop.is_set():
            try:
                async with session.ws_connect(self.url, heartbeat=HEARTBEAT) as ws:
                    self.connections += 1
                    failures = 0
                    await self._serve(ws, stop)
            except (aiohttp.ClientError, OSError, TimeoutError):
                pass
            if stop.is_set():
                return
            ceiling = min(2.0, 0.25 * 2**failures)
            failures += 1
            await asyncio.sleep(ceiling / 2 + random.random() * ceiling / 2)

    async def _serve(self, ws: aiohttp.ClientWebSocketResponse, stop: asyncio.Event) -> None:
        connection = self.connections
        await ws.send_json({"op": "subscribe", "channel": self.channel, "ref": "sub"})
        stopping = asyncio.create_task(stop.wait())
        try:
            while True:
                receiving = asyncio.create_task(ws.receive())
                await asyncio.wait({receiving, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not receiving.done():
                    receiving.cancel()
                    return
                message = receiving.result()
                if message.type is not aiohttp.WSMsgType.TEXT:
                    return
                frame = message.json()
                if frame.get("op") == "ok" and frame.get("ref") == "sub":
                    self.ledger.subscribed(self.name, time.time())
                    self.subscribed.set()
                elif frame.get("op") == "message" and isinstance(frame.get("data"), dict):
                    key = str(frame["data"].get("k"))
                    self.ledger.received.append(Received(self.name, key, time.time(), connection))
        finally:
            stopping.cancel()


class Publisher:
    def __init__(
        self, name: str, url: str, channel: str, ledger: Ledger, subscribers: list[Subscriber]
    ) -> None:
        self.name = name
        self.url = url
        self.channel = channel
        self.ledger = ledger
        self.subscribers = subscribers
        self.refused = 0  # publishes answered with an error, or not answered in time
        self._sequence = itertools.count(1)

    async def run(
        self, session: aiohttp.ClientSession, interval: float, stop: asyncio.Event
    ) -> None:
        while not stop.is_set():
            try:
                async with session.ws_connect(self.url, heartbeat=HEARTBEAT) as ws:
                    await self._publish_each(ws, interval, stop)
            except (aiohttp.ClientError, OSError):
                pass
            if not stop.is_set():
                await asyncio.sleep(0.25 + random.random() * 0.25)

    async def _publish_each(
        self, ws: aiohttp.ClientWebSocketResponse, interval: float, stop: asyncio.Event
    ) -> None:
        tick = time.monotonic()
        while not stop.is_set():
            sequence = next(self._sequence)
            key = f"{self.name}:{sequence}"
            frame = {"op": "publish", "channel": self.channel, "data": {"k": key}, "ref": sequence}
            await ws.send_json(frame)
            reply = await self._reply(ws, sequence)
            if reply is None:
                self.refused += 1
                if ws.closed:
                    return
            elif reply.get("op") == "ok":
                connections = {s.name: s.connections for s in self.subscribers}
                self.ledger.published.append(Published(key, time.time(), connections))
            else:
                self.refused += 1
            tick = max(tick + interval, time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), tick - time.monotonic())

    @staticmethod
    async def _reply(ws: aiohttp.ClientWebSocketResponse, ref: int) -> dict[str, Any] | None:
        """The server's answer to publish `ref`; None if none came in time."""
        try:
            async with asyncio.timeout(REPLY_TIMEOUT):
                while True:
                    message = await ws.receive()
                    if message.type is not aiohttp.WSMsgType.TEXT:
                        return None
                    frame: dict[str, Any] = message.json()
                    if frame.get("ref") == ref:
                        return frame
        except TimeoutError:
            return None


class SocketLoad:
    def __init__(
        self,
        url: str,
        ledger: Ledger,
        channel: str,
        *,
        publishers: int = 2,
        subscribers: int = 6,
        rate: float = 10.0,
    ) -> None:
        ws_url = url.replace("http://", "ws://", 1) + "/ws"
        self.subscribers = [
            Subscriber(f"s{n}", ws_url, channel, ledger) for n in range(1, subscribers + 1)
        ]
        self.publishers = [
            Publisher(f"p{n}", ws_url, channel, ledger, self.subscribers)
            for n in range(1, publishers + 1)
        ]
        self.interval = publishers / rate if rate > 0 else 0.0
        self._stop = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def refused(self) -> int:
        return sum(p.refused for p in self.publishers)

    async def start(self) -> None:
        """Subscribers first, each confirmed, then the publishers."""
        self._session = aiohttp.ClientSession()
        for subscriber in self.subscribers:
            self._tasks.append(asyncio.create_task(subscriber.run(self._session, self._stop)))
        async with asyncio.timeout(30):
            await asyncio.gather(*(s.subscribed.wait() for s in self.subscribers))
        if self.interval > 0:
            for publisher in self.publishers:
                self._tasks.append(
                    asyncio.create_task(publisher.run(self._session, self.interval, self._stop))
                )

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        if self._session is not None:
            await self._session.close()
