"""The Redis backend: GCRA in one atomic Lua script, loaded once, called by its hash.

The script reads Redis's own clock (`TIME`), so every instance sharing the
Redis shares one clock as well as one budget: exactness never depends on the
instances' clocks agreeing. One `EVALSHA` per request, sent in one pipeline
with the other Redis calls of the same loop turn; after a Redis restart
(`NOSCRIPT`) the script is loaded again and the call repeated once.
"""

from __future__ import annotations

import hashlib

from app.ratelimit.algorithm import Decision
from app.ratelimit.limits import Limit
from app.ratelimit.memory_limiter import Limiter
from app.redis_batch import RedisBatcher

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
        """Load the script (its hash is known in advance; this makes the first call cheap)."""
        await self._client.script_load(SCRIPT)

    async def ping(self) -> None:
        await self._client.ping()

    async def hit(self, key: str, limit: Limit) -> Decision:
        allowed, remaining, reset_us = await self._batch.evalsha(
            SCRIPT_SHA, SCRIPT, [key], [limit.interval_us, limit.horizon_us]
        )
        return Decision(allowed == 1, int(remaining), int(reset_us))

    async def close(self) -> None:
        """Wait for the calls in flight (their requests are waiting for them)."""
        await self._batch.drain()  # the batcher is shared: its owner closes it
