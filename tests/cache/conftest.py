"""Cache backends for the contract suite: the in-process LRU and the machine's Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from app.cache.backend import CacheBackend
from app.cache.memory import MemoryBackend
from app.cache.redis_store import RedisBackend
from tests.support.clock import Clock
from tests.support.redis import open_batcher

RemainingTtl = Callable[[str], "float | None"]


@pytest.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest, clock: Clock) -> AsyncIterator[CacheBackend]:
    if request.param == "memory":
        yield MemoryBackend(100, clock=clock)
        return
    url: str = request.getfixturevalue("redis_url")
    prefix: str = request.getfixturevalue("redis_prefix")
    async with open_batcher(url) as batcher:
        yield RedisBackend(batcher, prefix)


async def remaining_ttl(backend: CacheBackend, key: str) -> float | None:
    """Seconds the entry has left, read from the store itself (no sleeping)."""
    if isinstance(backend, MemoryBackend):
        entry = backend._values.get(key)
        return None if entry is None else entry[0] - backend._clock()
    assert isinstance(backend, RedisBackend)
    ms = await backend.client.pttl(backend._values + key)
    return None if ms < 0 else ms / 1000
