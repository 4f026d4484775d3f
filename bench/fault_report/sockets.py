"""WebSocket load: publishers on a chat channel, subscribers that recover what they miss.

Both use Keel's own recovering client (`app.websocket.client.KeelSocket`)
through nginx (`/ws`), as an application would: it reconnects with back-off,
subscribes again with `since`, yields each message once and in order, and a
`Reset` when the channel cannot be recovered (`recovered: false`).

A publisher counts a message published once the server answered `ok`; at
that moment each subscriber's count of replays asked for (`replays`:
subscribes sent with `since`, after a reconnect or to fill a gap) is noted,
so a message that reaches a subscriber after a replay it had not asked for
yet is known to have come by recovery rather than live.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time

import aiohttp

from app.websocket.client import KeelError, KeelSocket, Reset
from bench.fault_report.ledger import Ledger, Published, Received


class Subscriber:
    def __init__(self, name: str, url: str, channel: str, ledger: Ledger) -> None:
        self.name = name
        self.url = url
        self.channel = channel
        self.ledger = ledger
        self.socket: KeelSocket | None = None
        self.subscribed = asyncio.Event()

    @property
    def replays(self) -> int:
        return self.socket.replays if self.socket is not None else 0

    async def run(self, session: aiohttp.ClientSession) -> None:
        async with KeelSocket(self.url, session=session) as socket:
            self.socket = socket
            await socket.subscribe(self.channel)
            self.ledger.subscribed(self.name, time.time())
            self.subscribed.set()
            async for event in socket:  # until close()
                if isinstance(event, Reset):
                    self.ledger.reset(self.name, time.time())
                    continue
                key = str(event.data["k"]) if isinstance(event.data, dict) else ""
                self.ledger.received.append(Received(self.name, key, time.time(), socket.replays))

    async def close(self) -> None:
        if self.socket is not None:
            await self.socket.close()


class Publisher:
    def __init__(
        self, name: str, url: str, channel: str, ledger: Ledger, subscribers: list[Subscriber]
    ) -> None:
        self.name = name
        self.url = url
        self.channel = channel
        self.ledger = ledger
        self.subscribers = subscribers
        self._sequence = itertools.count(1)

    async def run(
        self, session: aiohttp.ClientSession, interval: float, stop: asyncio.Event
    ) -> None:
        async with KeelSocket(self.url, session=session) as socket:
            tick = time.monotonic()
            while not stop.is_set():
                key = f"{self.name}:{next(self._sequence)}"
                sent = time.time()
                try:
                    await socket.publish(self.channel, {"k": key})
                except (KeelError, TimeoutError):
                    self.ledger.refused.append(sent)  # the publisher knows: not counted
                else:
                    replays = {s.name: s.replays for s in self.subscribers}
                    self.ledger.published.append(Published(key, time.time(), sent, replays))
                tick = max(tick + interval, time.monotonic())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), tick - time.monotonic())


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

    async def start(self) -> None:
        """Subscribers first, each confirmed, then the publishers."""
        self._session = aiohttp.ClientSession()
        for subscriber in self.subscribers:
            self._tasks.append(asyncio.create_task(subscriber.run(self._session)))
        async with asyncio.timeout(30):
            await asyncio.gather(*(s.subscribed.wait() for s in self.subscribers))
        if self.interval > 0:
            for publisher in self.publishers:
                self._tasks.append(
                    asyncio.create_task(publisher.run(self._session, self.interval, self._stop))
                )

    async def stop(self) -> None:
        self._stop.set()
        for subscriber in self.subscribers:
            await subscriber.close()
        await asyncio.gather(*self._tasks)
        if self._session is not None:
            await self._session.close()
