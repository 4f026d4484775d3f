"""Presence over Redis: each instance reports its subscriber counts; a count sums them.

Keys, under the deployment's prefix:

    ws:presence          sorted set: instance id -> when its report expires (ms, Redis's clock)
    ws:presence:<id>     hash: channel -> subscribers on that instance (expires with it)

A background task writes what changed whenever local subscriptions change
(at most every `COALESCE` seconds, so a burst of subscribes is one write),
and at least every `[redis] heartbeat_interval`, which also pushes the
report's expiry `heartbeat_ttl` ahead. An instance that dies stops doing so:
within `heartbeat_ttl` its count no longer adds up, and its hash expires.
One that stops cleanly removes its report at once. A report Redis lost (a
restart) is noticed at the next write and written again in full.

A count is this instance's subscribers, exactly, plus the other live
instances' last reports, read in one script.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from app.core.background import BackgroundTask
from app.core.outage import Outage
from app.redis import RedisService
from app.redis.script import Script
from app.websocket.hub import Hub
from app.websocket.presence import Presence, PresenceUnavailable

log = logging.getLogger("keel.websocket")

COALESCE = 0.05  # seconds between two writes of this instance's counts
DEGRADED = "presence is unavailable; other instances may count stale numbers of this one"

_NOW_MS = """
local clock = redis.call('TIME')
local now = clock[1] * 1000 + math.floor(clock[2] / 1000)
"""

# KEYS: the set of reports, this instance's hash. ARGV: instance id, ttl (ms),
# "1" to rewrite the hash whole, then channel, count pairs (0: no subscriber).
# Returns whether the hash existed before (a lost report is rewritten whole).
WRITE_SCRIPT = Script(
    f"""{_NOW_MS}
local existed = redis.call('EXISTS', KEYS[2])
if ARGV[3] == '1' then redis.call('DEL', KEYS[2]) end
for i = 4, #ARGV, 2 do
  if ARGV[i + 1] == '0' then
    redis.call('HDEL', KEYS[2], ARGV[i])
  else
    redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  end
end
redis.call('PEXPIRE', KEYS[2], ARGV[2])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('PEXPIRE', KEYS[1], ARGV[2] * 10)
return existed
"""
)

# KEYS: the set of reports. ARGV: hash key prefix, channel, this instance's id.
# The hashes are named from the set's members (one Redis, not a cluster).
COUNT_SCRIPT = Script(
    f"""{_NOW_MS}
local total = 0
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')) do
  if id ~= ARGV[3] then
    total = total + (tonumber(redis.call('HGET', ARGV[1] .. id, ARGV[2])) or 0)
  end
end
return total
"""
)

# KEYS: the set of reports, this instance's hash. ARGV: instance id.
LEAVE_SCRIPT = Script(
    """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
"""
)


class RedisPresence(Presence):
    backend = "redis"

    def __init__(self, hub: Hub, redis: RedisService, instance_id: str) -> None:
        super().__init__(hub)
        self.redis = redis
        self.instance_id = instance_id
        self.reports = redis.key("ws", "presence")
        self.own = redis.key("ws", "presence", instance_id)
        self._hash_prefix = redis.key("ws", "presence", "")
        self._written: dict[str, int] = {}  # what Redis holds for this instance
        self._whole = True  # the next write replaces the hash
        self._changed = asyncio.Event()
        self.outage = Outage("websocket presence: redis", log)
        self.writes = 0

    async def count(self, channel: str) -> int:
        others = await self._call(
            COUNT_SCRIPT, (self.reports,), (self._hash_prefix, channel, self.instance_id)
        )
        if others is None:
            why = self.outage.reason or "the redis breaker is open"
            raise PresenceUnavailable(f"presence is counted in Redis, unreachable now ({why})")
        return self.hub.subscribers(channel) + int(others)

    def changed(self) -> None:
        self._changed.set()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        task = BackgroundTask("keel.websocket.presence", self._report)
        task.start()
        try:
            yield
        finally:
            await task.stop()
            # Counted nowhere from now on; a failure here is what the TTL is for.
            await self._call(LEAVE_SCRIPT, (self.reports, self.own), (self.instance_id,))

    async def _report(self) -> None:
        interval = self.redis.settings.heartbeat_interval
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._changed.wait()
            self._changed.clear()
            await self.write()
            await asyncio.sleep(COALESCE)

    async def write(self) -> None:
        """Report this instance's counts: what changed since the last write, or all."""
        counts = self.hub.channels()
        whole = self._whole
        if whole:
            changes = counts
        else:
            changes = {c: n for c, n in counts.items() if self._written.get(c) != n}
            changes.update({c: 0 for c in self._written if c not in counts})
        args: list[Any] = [self.instance_id, int(self.redis.settings.heartbeat_ttl * 1000)]
        args.append("1" if whole else "0")
        for channel, subscribers in changes.items():
            args += (channel, subscribers)
        existed = await self._call(WRITE_SCRIPT, (self.reports, self.own), args)
        if existed is None:
            self._whole = True  # what Redis holds is unknown now
            return
        self.writes += 1
        lost = not existed and any(self._written.values()) and not whole
        self._written = counts
        self._whole = lost
        if lost:  # Redis lost the report (restarted): write it whole, now
            self._changed.set()

    async def _call(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        return await script.attempt(self.redis, keys, args, self.outage, DEGRADED)

    def state(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "reported_channels": len(self._written),
            "writes": self.writes,
            "last_error": self.outage.reason,
        }
