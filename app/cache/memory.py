"""The in-process backend: an LRU of at most `max_entries`, each with its own TTL.

The embedded default, not a test fake: a single instance needs no Redis to get
cache-aside reads. Time comes from an injected clock so TTLs are tested
without sleeping.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from app.cache.backend import CacheBackend


class MemoryBackend(CacheBackend):
    name = "memory"

    def __init__(self, max_entries: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries = max_entries
        self._clock = clock
        self._values: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._leases: dict[str, tuple[float, str]] = {}

    async def get(self, key: str) -> bytes | None:
        entry = self._values.get(key)
        if entry is None:
            return None
        expires, value = entry
        if expires <= self._clock():
            del self._values[key]
            return None
        self._values.move_to_end(key)
        return value

    def _store(self, key: str, value: bytes, ttl: float) -> None:
        self._values[key] = (self._clock() + ttl, value)
        self._values.move_to_end(key)
        while len(self._values) > self.max_entries:
            self._values.popitem(last=False)

    async def set(self, key: str, value: bytes, ttl: float) -> None:
        self._leases.pop(key, None)
        self._store(key, value, ttl)

    async def delete(self, keys: Sequence[str]) -> None:
        for key in keys:
            self._values.pop(key, None)
            self._leases.pop(key, None)

    def _lease_holder(self, key: str) -> str | None:
        lease = self._leases.get(key)
        if lease is None:
            return None
        if lease[0] <= self._clock():
            del self._leases[key]
            return None
        return lease[1]

    async def lease(self, key: str, token: str, lease_ttl: float) -> bytes | bool:
        value = await self.get(key)
        if value is not None:
            return value
        if self._lease_holder(key) is not None:
            return False
        self._leases[key] = (self._clock() + lease_ttl, token)
        return True

    async def fill(self, key: str, token: str, value: bytes, ttl: float) -> bool:
        if self._lease_holder(key) != token:
            return False
        del self._leases[key]
        self._store(key, value, ttl)
        return True

    async def distrust_older(self) -> None:
        """Nothing to do: this store cannot be partitioned away from its process."""

    async def clear(self) -> None:
        self._values.clear()
        self._leases.clear()

    def entries(self) -> int:
        return len(self._values)
