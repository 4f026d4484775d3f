"""Publications held while Redis cannot number them, sent in order once it can.

With history in Redis, a message is a channel's message only once the publish
script gave it an offset. While Redis cannot be reached (partitioned, paused,
the `redis` breaker open) an instance holds what is published on it — by
clients and by server code alike — and a background task sends it, oldest
first, as soon as the script runs again: every subscriber, on every instance,
then gets each message once, with its offset, late rather than never. While
anything is held, new publications queue behind it, so one instance's
messages keep their order.

Held messages go once `may_flush()` says so: the history waits until its own
pub/sub connection has been back a moment, so that the other instances,
which reconnect on the same cadence, are listening too when they go — a
subscriber that still misses one recovers it from the history with `since`,
as long as the history holds it.

The queue is bounded (`limit`); a publication beyond it is given to
`overflow` (the history delivers it to this instance's subscribers only,
unnumbered, as before holding). What is still held when the instance stops
is sent if Redis answers then, else dropped with a warning: held messages
live in this process only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable

from app.core.background import BackgroundTask

log = logging.getLogger("keel.websocket")

RETRY_INTERVAL = 0.5  # seconds between attempts to send the oldest held message
DEFAULT_LIMIT = 10_000

# Numbers, keeps and publishes one message; False when Redis cannot answer now.
Send = Callable[[str, bytes], Awaitable[bool]]
Overflow = Callable[[str, bytes], None]


class HeldPublications:
    def __init__(
        self,
        send: Send,
        overflow: Overflow,
        *,
        may_flush: Callable[[], bool] = lambda: True,
        limit: int = DEFAULT_LIMIT,
    ) -> None:
        self._send = send
        self._overflow = overflow
        self._may_flush = may_flush
        self.limit = limit
        self._queue: deque[tuple[str, bytes]] = deque()
        self._added = asyncio.Event()
        self._task = BackgroundTask("keel.websocket.held", self._flush_forever)
        self.held_total = 0  # publications that had to wait
        self.sent_late = 0  # of those, sent since
        self.overflowed = 0

    def __len__(self) -> int:
        return len(self._queue)

    async def publish(self, channel: str, body: bytes) -> None:
        """Send now if nothing waits and Redis answers; else hold it (or overflow)."""
        if not self._queue and await self._send(channel, body):
            return
        self.hold(channel, body)

    def hold(self, channel: str, body: bytes) -> None:
        if len(self._queue) >= self.limit:
            self.overflowed += 1
            self._overflow(channel, body)
            return
        if not self._queue:
            log.warning("redis cannot number websocket messages: holding them until it can")
        self._queue.append((channel, body))
        self.held_total += 1
        self._added.set()

    async def flush(self) -> bool:
        """Send held messages, oldest first, until one cannot be; True when none is left."""
        while self._queue:
            channel, body = self._queue[0]
            if not await self._send(channel, body):
                return False
            self._queue.popleft()
            self.sent_late += 1
        return True

    async def _flush_forever(self) -> None:
        while True:
            if not self._queue:
                self._added.clear()
                await self._added.wait()
                await asyncio.sleep(RETRY_INTERVAL)  # it was just tried, and failed
            if not self._may_flush():
                await asyncio.sleep(RETRY_INTERVAL)
                continue
            sent_before = self.sent_late
            if await self.flush():
                log.info(
                    "redis numbers websocket messages again: %d held message(s) sent",
                    self.sent_late - sent_before,
                )
            else:
                await asyncio.sleep(RETRY_INTERVAL)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        self._task.start()
        try:
            yield
        finally:
            await self._task.stop()
            if self._queue and not await self.flush():
                log.warning(
                    "stopping with %d websocket message(s) held (redis unreachable): dropped",
                    len(self._queue),
                )
                self._queue.clear()
