"""The Redis backend: values shared by every instance, each operation one round trip.

Keys: `<prefix>cache:<key>` holds `<epoch>|<value>`, `<prefix>cache-lease:<key>`
the lease token, `<prefix>cache-epoch` a counter. The lease and fill steps are
Lua scripts (atomic, called by SHA after the first use).

The epoch closes the gap a partition leaves: an instance that lost touch with
Redis may have missed invalidations, so on recovery it increments the epoch and
from then on treats values stored under an older epoch as missing (it reloads
and overwrites them). Other instances keep trusting them unless they saw the
outage too; the invalidations the cut-off instance could not deliver are
replayed by it before it uses the cache again (see `Cache`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Sequence

from app.cache.backend import CacheBackend, LeaseStep
from app.redis import REDIS_ERRORS, RedisBatcher

# KEYS: the value, the lease. ARGV: the token, the lease's ms, the oldest trusted epoch.
# Returns the stored `<epoch>|<value>`, 1 (lease taken) or 0 (another caller holds it).
LEASE_SCRIPT = """
local v = redis.call('GET', KEYS[1])
if v then
  local sep = string.find(v, '|', 1, true)
  if sep and tonumber(string.sub(v, 1, sep - 1)) >= tonumber(ARGV[3]) then
    return v
  end
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
return 0
"""

_FILL = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], (redis.call('GET', KEYS[3]) or '0') .. '|' .. ARGV[2], 'PX', ARGV[3])
redis.call('DEL', KEYS[2])
return 1
"""

_SET = """
redis.call('SET', KEYS[1], (redis.call('GET', KEYS[3]) or '0') .. '|' .. ARGV[1], 'PX', ARGV[2])
redis.call('DEL', KEYS[2])
return 1
"""


class _Script:
    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class RedisBackend(CacheBackend):
    name = "redis"
    errors = REDIS_ERRORS

    def __init__(self, batch: RedisBatcher, prefix: str) -> None:
        self.client = batch.client
        self.batch = batch
        self._values = prefix + "cache:"
        self._leases = prefix + "cache-lease:"
        self._epoch_key = prefix + "cache-epoch"
        self.min_epoch = 0
        self._lease = _Script(LEASE_SCRIPT)
        self._fill = _Script(_FILL)
        self._set = _Script(_SET)

    def _run(
        self, script: _Script, keys: Sequence[str], args: Sequence[object]
    ) -> Awaitable[object]:
        return self.batch.evalsha(script.sha, script.source, keys, args)

    def _trusted(self, raw: bytes) -> bytes | None:
        epoch, sep, value = raw.partition(b"|")
        if not sep or not epoch.isdigit() or int(epoch) < self.min_epoch:
            return None
        return value

    async def get(self, key: str) -> bytes | None:
        raw = await self.batch.execute("GET", self._values + key)
        if raw is None:
            return None
        assert isinstance(raw, bytes)  # the client is made with decode_responses=False
        return self._trusted(raw)

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        await self._run(
            self._set, [self._values + key, self._leases + key, self._epoch_key], [value, _ms(ttl)]
        )

    async def delete(self, keys: Sequence[str]) -> None:
        if keys:
            await self.batch.execute(
                "DEL", *[self._values + k for k in keys], *[self._leases + k for k in keys]
            )

    async def lease(self, key: str, token: str, lease_ttl: float) -> bytes | bool:
        keys, args = self.lease_step(key, token, lease_ttl)
        return self.leased(await self._run(self._lease, keys, args))

    def lease_step(self, key: str, token: str, lease_ttl: float) -> LeaseStep:
        keys = [self._values + key, self._leases + key]
        return LeaseStep(keys, [token, _ms(lease_ttl), self.min_epoch])

    def leased(self, result: object) -> bytes | bool:
        if isinstance(result, bytes):
            return self._trusted(result) or False
        return result == 1

    async def fill(self, key: str, token: str, value: bytes, ttl: float) -> bool:
        stored = await self._run(
            self._fill,
            [self._values + key, self._leases + key, self._epoch_key],
            [token, value, _ms(ttl)],
        )
        return bool(stored == 1)

    async def distrust_older(self) -> None:
        self.min_epoch = int(await self.batch.execute("INCR", self._epoch_key))

    async def clear(self) -> None:
        for pattern in (self._values + "*", self._leases + "*"):
            batch: list[bytes] = []
            async for key in self.client.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) >= 1000:
                    await self.client.unlink(*batch)
                    batch.clear()
            if batch:
                await self.client.unlink(*batch)
