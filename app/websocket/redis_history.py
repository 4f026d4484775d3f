"""The Redis history: offsets and messages shared by every instance, so a client recovers anywhere.

Per channel C, under the deployment's key prefix:

    ws:history:C:meta   hash {epoch, offset}: the epoch and the latest offset
    ws:history:C        stream of the last `history_size` stamped messages, IDs `<offset>-0`

Publishing is one script (`PUBLISH_SCRIPT`), atomic in Redis: it makes the
epoch if the channel has none, takes the next offset (HINCRBY), stamps the
message, appends it to the stream capped at exactly `history_size` (XADD
MAXLEN), sets both keys to expire `history_ttl` after this publish, and
PUBLISHes it on the channel's pub/sub channel. Two instances publishing at
once therefore never share an offset nor leave a gap, and Redis sends every
instance the channel's messages in offset order — the publisher's own
instance included (the bus tags them for everyone, see `redis_bus.py`), so
every subscriber sees one order. The epoch is made once per history, from a
token of the instance that makes it and Redis's clock; when Redis restarts or
the keys expire, the next publish or read makes a new one, and clients that
knew the old one are told `recovered: false`.

Reading (`READ_SCRIPT`) refreshes the meta key's TTL (a channel that is read
keeps its epoch) and returns the epoch, the latest offset and, when the
client's epoch matches, the stream after its offset (XRANGE).

Degraded mode. When the script cannot run (Redis unreachable, the `redis`
guard refusing), a publication is held (`held.py`) and published, in order,
as soon as the script runs again: late, but numbered, kept and delivered to
every instance like any other. Only beyond the held queue's bound does a
publication reach this instance's subscribers alone, unstamped (no offset, in
no history). A read answers `Replay.unknown` (the client is told
`recovered: false`).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections import OrderedDict
from typing import Any

from app.core.outage import Outage
from app.redis import RedisService
from app.redis.script import Script
from app.websocket.bus import Deliver
from app.websocket.held import HeldPublications
from app.websocket.history import ChannelHistory, History, Replay, judge
from app.websocket.position import Position, stamp
from app.websocket.redis_bus import RedisBus

log = logging.getLogger("keel.websocket")

# Held messages wait this long after the pub/sub connection is back: long enough
# for every instance's (they retry every RECONNECT_DELAY) to be back too.
FLUSH_SETTLE = 1.0
# Channels whose history this instance remembers for state() (as last seen).
REMEMBERED_CHANNELS = 1000

# Makes the channel's epoch when it has none (shared by both scripts). The
# stream goes too: offsets restart at 1 in the new epoch.
_EPOCH = """
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  local now = redis.call('TIME')
  epoch = ARGV[1] .. '.' .. now[1] .. string.format('%06d', tonumber(now[2]))
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'offset', 0)
end
"""

# KEYS: meta, stream, pub/sub channel. ARGV: epoch token, ttl (ms), history_size,
# the message without its closing brace.
PUBLISH_SOURCE = f"""{_EPOCH}
local offset = redis.call('HINCRBY', KEYS[1], 'offset', 1)
local payload = ARGV[4] .. ',"offset":' .. string.format('%d', offset)
  .. ',"epoch":"' .. epoch .. '"}}'
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[3], string.format('%d', offset) .. '-0', 'm', payload)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('PUBLISH', KEYS[3], string.format('#%015d', offset) .. payload)
return {{epoch, offset, redis.call('XLEN', KEYS[2])}}
"""

# KEYS: meta, stream. ARGV: epoch token, ttl (ms), since offset (-1: none), since epoch.
READ_SOURCE = f"""{_EPOCH}
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local offset = tonumber(redis.call('HGET', KEYS[1], 'offset'))
local since = tonumber(ARGV[3])
local entries = {{}}
if since >= 0 and since < offset and epoch == ARGV[4] then
  entries = redis.call('XRANGE', KEYS[2], string.format('%d', since + 1) .. '-0', '+')
end
return {{epoch, offset, redis.call('XLEN', KEYS[2]), entries}}
"""


PUBLISH_SCRIPT = Script(PUBLISH_SOURCE)
READ_SCRIPT = Script(READ_SOURCE)
DEGRADED = "publications are held until it answers"


class RedisHistory(History):
    backend = "redis"

    def __init__(
        self, deliver: Deliver, redis: RedisService, bus: RedisBus, size: int, ttl: float
    ) -> None:
        super().__init__(size, ttl)
        self.deliver = deliver
        self.redis = redis
        self.bus = bus
        self.prefix = redis.key("ws", "history", "")
        self.token = secrets.token_hex(4)  # this instance's part of the epochs it makes
        self._ttl_ms = str(max(1, int(ttl * 1000)))
        self._size = str(size)
        self._seen: OrderedDict[str, ChannelHistory] = OrderedDict()
        self.outage = Outage("websocket history: redis", log)
        self.unstamped = 0  # publications delivered here only, without an offset
        self.held = HeldPublications(self._send, self._here_only, may_flush=self._settled)

    def running(self) -> contextlib.AbstractAsyncContextManager[None]:
        return self.held.running()

    async def publish(self, channel: str, body: bytes) -> None:
        await self.held.publish(channel, body)

    def _settled(self) -> bool:
        """Held messages may go: the pub/sub connection has been back `FLUSH_SETTLE` s."""
        since = self.bus.live_since
        return since is not None and time.monotonic() - since >= FLUSH_SETTLE

    def _here_only(self, channel: str, body: bytes) -> None:
        """Beyond what can be held: this instance's subscribers, unstamped."""
        self.unstamped += 1
        self.deliver(channel, body)

    async def _send(self, channel: str, body: bytes) -> bool:
        """Number, keep and publish `body`; False when Redis cannot answer now."""
        meta = self.prefix + channel
        keys = (meta + ":meta", meta, self.bus.prefix + channel)
        args = (self.token, self._ttl_ms, self._size, body[:-1])
        reply = await PUBLISH_SCRIPT.attempt(self.redis, keys, args, self.outage, DEGRADED)
        if reply is None:
            return False
        epoch, offset, kept = reply[0].decode(), int(reply[1]), int(reply[2])
        self._remember(channel, ChannelHistory(epoch, offset, kept))
        if self.bus.receiving(channel):
            # This instance's subscribers get it from Redis, in order with everyone's:
            # wait for it, so it reaches them before this returns (as without history).
            await self.bus.until_heard(channel, offset)
        else:
            # Redis cannot send it here now: deliver it here, stamped (the same bytes
            # as the script's). A message missed meanwhile from another instance shows
            # as a gap in the offsets, which a client fills by subscribing with `since`.
            self.deliver(channel, stamp(body, offset, epoch))
        return True

    async def read(self, channel: str, since: Position | None) -> Replay:
        meta = self.prefix + channel
        args = (
            self.token,
            self._ttl_ms,
            -1 if since is None else since.offset,
            "" if since is None else since.epoch,
        )
        keys = (meta + ":meta", meta)
        reply = await READ_SCRIPT.attempt(self.redis, keys, args, self.outage, DEGRADED)
        if reply is None:
            return Replay.unknown(since)
        epoch_bytes, offset, kept, entries = reply
        latest = Position(int(offset), epoch_bytes.decode())
        self._remember(channel, ChannelHistory(latest.epoch, latest.offset, int(kept)))
        first = int(entries[0][0].partition(b"-")[0]) if entries else None
        recovered = judge(since, latest, first)
        if not recovered or not entries:
            return Replay(latest, recovered)
        return Replay(latest, True, [fields[1] for _, fields in entries])

    def _remember(self, channel: str, seen: ChannelHistory) -> None:
        self._seen[channel] = seen
        self._seen.move_to_end(channel)
        if len(self._seen) > REMEMBERED_CHANNELS:
            self._seen.popitem(last=False)

    def channels(self) -> dict[str, ChannelHistory]:
        return dict(self._seen)

    def state(self) -> dict[str, Any]:
        return {
            **super().state(),
            "unstamped": self.unstamped,
            "held": len(self.held),
            "held_total": self.held.held_total,
            "last_error": self.outage.reason,
            "outage_since": self.outage.since,
        }
