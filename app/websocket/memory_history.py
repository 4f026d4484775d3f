"""The in-process history: one instance, no Redis (the embedded default).

Per channel: the epoch (a random token made when the channel's history is
created here), the latest offset and the last `history_size` stamped messages.
It expires the way the Redis history does: the messages `history_ttl` seconds
after the channel's last publish, the whole history (epoch and offset) that
long after it was last published on or read. A restart loses it all, and the
new epochs tell every reconnecting client so.

Memory is bounded: `history_size` messages per channel, expired channels
dropped after `history_ttl` (least recently used first, at every publish and
read), and at most `MAX_BYTES` of messages and `MAX_CHANNELS` channels in all
— past either, the least recently used channels' histories are dropped whole
(never the one in use), so a client that opens many channels cannot grow the
process. A dropped channel starts again with a new epoch: a client recovering
on it gets `recovered: false` and reloads, exactly as after a restart.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from app.websocket.bus import Deliver
from app.websocket.history import ChannelHistory, History, Replay, judge
from app.websocket.position import Position, stamp

MAX_BYTES = 64 * 1024 * 1024  # stamped messages held over every channel
MAX_CHANNELS = 100_000  # channels remembered (each an epoch, an offset, its messages)


class _Log:
    __slots__ = ("bytes", "entries", "epoch", "offset", "published_at", "used_at")

    def __init__(self, size: int, now: float) -> None:
        self.epoch = secrets.token_hex(8)
        self.offset = 0
        self.entries: deque[bytes] = deque(maxlen=size)
        self.bytes = 0  # of the entries
        self.published_at = now
        self.used_at = now

    def append(self, payload: bytes) -> int:
        """Keep `payload` (the deque drops the oldest past its size); the change in bytes held."""
        entries = self.entries
        change = len(payload)
        if entries and len(entries) == entries.maxlen:
            change -= len(entries[0])
        entries.append(payload)
        self.bytes += change
        return change

    def clear(self) -> int:
        """Drop every message (the epoch and offset stay); the change in bytes held."""
        change, self.bytes = -self.bytes, 0
        self.entries.clear()
        return change

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
        max_bytes: int = MAX_BYTES,
        max_channels: int = MAX_CHANNELS,
    ) -> None:
        super().__init__(size, ttl)
        self.deliver = deliver
        self._clock = clock
        self.max_bytes = max_bytes
        self.max_channels = max_channels
        self._logs: OrderedDict[str, _Log] = OrderedDict()  # least recently used first
        self.bytes = 0  # stamped messages held over every channel

    async def publish(self, channel: str, body: bytes) -> None:
        self.deliver(channel, self.append(channel, body))

    def append(self, channel: str, body: bytes) -> bytes:
        """Stamp `body` with the channel's next offset and keep it; the stamped bytes."""
        log = self._use(channel)
        log.offset += 1
        payload = stamp(body, log.offset, log.epoch)
        self.bytes += log.append(payload)
        log.published_at = log.used_at
        self._trim(keep=log)
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
            self._drop_oldest()
        log = logs.get(channel)
        if log is None:
            log = logs[channel] = _Log(self.size, now)
            self._trim(keep=log)
        else:
            logs.move_to_end(channel)
            if now - log.published_at > self.ttl:
                self.bytes += log.clear()  # the messages expire; the epoch and offset live on
        log.used_at = now
        return log

    def _trim(self, keep: _Log) -> None:
        """Drop the least recently used channels while over a bound (never `keep`)."""
        logs = self._logs
        while (self.bytes > self.max_bytes or len(logs) > self.max_channels) and (
            next(iter(logs.values())) is not keep
        ):
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        _, log = self._logs.popitem(last=False)
        self.bytes -= log.bytes

    def channels(self) -> dict[str, ChannelHistory]:
        return {
            name: ChannelHistory(log.epoch, log.offset, len(log.entries))
            for name, log in self._logs.items()
        }
