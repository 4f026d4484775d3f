"""The in-process history: one instance, no Redis (the embedded default).

Per channel: the epoch (a random token made when the channel's history is
created here), the latest offset and the last `history_size` stamped messages.
It expires the way the Redis history does: the messages `history_ttl` seconds
after the channel's last publish, the whole history (epoch and offset) that
long after it was last published on or read. A restart loses it all, and the
new epochs tell every reconnecting client so.

Memory is bounded by `history_size` messages per channel used within the last
`history_ttl` seconds: expired channels are dropped, least recently used
first, at every publish and read.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from app.websocket.bus import Deliver
from app.websocket.history import ChannelHistory, History, Replay, judge
from app.websocket.position import Position, stamp


class _Log:
    __slots__ = ("entries", "epoch", "offset", "published_at", "used_at")

    def __init__(self, size: int, now: float) -> None:
        self.epoch = secrets.token_hex(8)
        self.offset = 0
        self.entries: deque[bytes] = deque(maxlen=size)
        self.published_at = now
        self.used_at = now

    def first(self) -> int | None:
        """The oldest offset held."""
        return self.offset - len(self.entries) + 1 if self.entries else None


class MemoryHistory(History):
    backend = "memory"

    def __init__(
        self,
        deliver: Deliver,
        size: int,
        ttl: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(size, ttl)
        self.deliver = deliver
        self._clock = clock
        self._logs: OrderedDict[str, _Log] = OrderedDict()  # least recently used first

    async def publish(self, channel: str, body: bytes) -> None:
        self.deliver(channel, self.append(channel, body))

    def append(self, channel: str, body: bytes) -> bytes:
        """Stamp `body` with the channel's next offset and keep it; the stamped bytes."""
        log = self._use(channel)
        log.offset += 1
        payload = stamp(body, log.offset, log.epoch)
        log.entries.append(payload)
        log.published_at = log.used_at
        return payload

    async def read(self, channel: str, since: Position | None) -> Replay:
        log = self._use(channel)
        latest = Position(log.offset, log.epoch)
        recovered = judge(since, latest, log.first())
        if not recovered or since is None or since.offset == latest.offset:
            return Replay(latest, recovered)
        missed = latest.offset - since.offset
        return Replay(latest, True, list(log.entries)[-missed:])

    def _use(self, channel: str) -> _Log:
        now = self._clock()
        logs = self._logs
        while logs:
            oldest = next(iter(logs.values()))
            if now - oldest.used_at <= self.ttl:
                break
            logs.popitem(last=False)
        log = logs.get(channel)
        if log is None:
            log = logs[channel] = _Log(self.size, now)
        else:
            logs.move_to_end(channel)
            if now - log.published_at > self.ttl:
                log.entries.clear()  # the messages expire; the epoch and offset live on
        log.used_at = now
        return log

    def channels(self) -> dict[str, ChannelHistory]:
        return {
            name: ChannelHistory(log.epoch, log.offset, len(log.entries))
            for name, log in self._logs.items()
        }
