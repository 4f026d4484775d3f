"""The Redis backend: GCRA in one atomic Lua script, loaded once, called by its hash.

The script reads Redis's own clock (`TIME`), so every instance sharing the
Redis shares one clock as well as one budget: exactness never depends on the
instances' clocks agreeing. One `EVALSHA` per request, sent in one pipeline
with the other Redis calls of the same loop turn; after a Redis restart
(`NOSCRIPT`) the script is loaded again and the call repeated once.

A request whose handler will look a cache key up (`app.cache.read_ahead`)
gets both in the same call: `SCRIPT_WITH_LEASE` runs the cache's lease step
right after the limit step, and only when the request is allowed — one
command for the two, and no lease taken for a refused request.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from app.cache.read_ahead import ReadAhead
from app.cache.redis_store import LEASE_SCRIPT
from app.ratelimit.algorithm import Decision
from app.ratelimit.limits import Limit
from app.ratelimit.memory_limiter import Limiter
from app.redis.batcher import RedisBatcher

# KEYS[1] the bucket; ARGV interval and horizon in microseconds.
# Returns {allowed (0|1), remaining, reset_us}: see algorithm.gcra.
SCRIPT = """
local interval = tonumber(ARGV[1])
local horizon = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then tat = now end
local booked = tat + interval
local allow_at = booked - horizon
if now < allow_at then
  return {0, 0, allow_at - now}
end
redis.call('SET', KEYS[1], string.format('%d', booked), 'PX', math.ceil((booked - now) / 1000))
return {1, math.floor((horizon - (booked - now)) / interval), booked - now}
"""

SCRIPT_SHA = hashlib.sha1(SCRIPT.encode()).hexdigest()

# KEYS[1] the bucket, KEYS[2..3] the lease's; ARGV[1..2] the limit's, ARGV[3..5] the lease's.
# Returns SCRIPT's reply, with the lease's reply appended when allowed.
SCRIPT_WITH_LEASE = f"""
local function limit(KEYS, ARGV)
{SCRIPT}
end
local function lease(KEYS, ARGV)
{LEASE_SCRIPT}
end
local decision = limit({{KEYS[1]}}, {{ARGV[1], ARGV[2]}})
if decision[1] == 1 then
  decision[4] = lease({{KEYS[2], KEYS[3]}}, {{ARGV[3], ARGV[4], ARGV[5]}})
end
return decision
"""

SCRIPT_WITH_LEASE_SHA = hashlib.sha1(SCRIPT_WITH_LEASE.encode()).hexdigest()


class RedisLimiter(Limiter):
    """GCRA buckets in Redis, shared by every instance using the same Redis and key prefix.

    Calls go through the shared `RedisBatcher`: the script calls of one
    event-loop turn — with the cache lookups of the same turn — leave as one
    pipeline. Each `EVALSHA` is still atomic on its own, so exactness is
    unchanged.
    """

    name = "redis"

    def __init__(self, batch: RedisBatcher) -> None:
        self._client = batch.client
        self._batch = batch

    async def load(self) -> None:
        """Load the scripts (their hashes are known in advance; this makes first calls cheap)."""
        await self._client.script_load(SCRIPT)
        await self._client.script_load(SCRIPT_WITH_LEASE)

    async def ping(self) -> None:
        await self._client.ping()

    async def hit(self, key: str, limit: Limit, ahead: ReadAhead | None = None) -> Decision:
        """One step of `key`'s bucket; with `ahead`, its lease step too (when allowed)."""
        return self.decision(await self.send(key, limit, ahead), ahead)

    def send(self, key: str, limit: Limit, ahead: ReadAhead | None = None) -> asyncio.Future[Any]:
        """`hit` in two halves for the request path (no coroutine of its own): the call..."""
        if ahead is None:
            return self._batch.evalsha(
                SCRIPT_SHA, SCRIPT, [key], [limit.interval_us, limit.horizon_us]
            )
        step = ahead.step
        return self._batch.evalsha(
            SCRIPT_WITH_LEASE_SHA,
            SCRIPT_WITH_LEASE,
            [key, *step.keys],
            [limit.interval_us, limit.horizon_us, *step.args],
        )

    @staticmethod
    def decision(reply: Any, ahead: ReadAhead | None = None) -> Decision:
        """...and what its reply means; the lease step's reply goes to `ahead`."""
        if ahead is not None and len(reply) > 3:
            ahead.arrived(reply[3])
        return Decision(reply[0] == 1, int(reply[1]), int(reply[2]))

    async def forget(self, key: str) -> None:
        await self._client.delete(key)

    async def close(self) -> None:
        """Wait for the calls in flight (their requests are waiting for them)."""
        await self._batch.drain()  # the batcher is shared: its owner closes it
