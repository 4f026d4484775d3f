"""One contract, two backends: the in-process LRU and Redis behave the same."""

from __future__ import annotations

import pytest

from app.cache.backend import CacheBackend
from app.cache.memory import MemoryBackend
from app.cache.redis_store import RedisBackend
from app.redis.batcher import RedisBatcher
from tests.cache.conftest import remaining_ttl
from tests.support.clock import Clock


async def test_a_missing_key_is_none(backend: CacheBackend) -> None:
    assert await backend.get("nothing") is None


async def test_set_then_get_and_overwrite(backend: CacheBackend) -> None:
    await backend.set("k", b'{"a":1}', 10)
    assert await backend.get("k") == b'{"a":1}'
    await backend.set("k", b"2|x", 10)  # values may hold the separator the store uses
    assert await backend.get("k") == b"2|x"


async def test_delete_removes_each_key_and_ignores_missing_ones(backend: CacheBackend) -> None:
    await backend.set("a", b"1", 10)
    await backend.set("b", b"2", 10)
    await backend.set("c", b"3", 10)
    await backend.delete(["a", "b", "missing"])
    assert await backend.get("a") is None
    assert await backend.get("b") is None
    assert await backend.get("c") == b"3"
    await backend.delete([])


async def test_the_ttl_is_stored_with_the_value(backend: CacheBackend) -> None:
    await backend.set("k", b"v", 10)
    left = await remaining_ttl(backend, "k")
    assert left is not None
    assert 9.0 < left <= 10.0


async def test_a_lease_is_granted_once(backend: CacheBackend) -> None:
    assert await backend.lease("k", "t1", 5) is True
    assert await backend.lease("k", "t2", 5) is False


async def test_a_lease_on_a_present_key_returns_the_value(backend: CacheBackend) -> None:
    await backend.set("k", b"v", 10)
    assert await backend.lease("k", "t1", 5) == b"v"


async def test_fill_stores_for_the_lease_holder_and_releases_the_lease(
    backend: CacheBackend,
) -> None:
    assert await backend.lease("k", "t1", 5) is True
    assert await backend.fill("k", "t1", b"v", 10) is True
    assert await backend.get("k") == b"v"
    assert await backend.fill("k", "t1", b"again", 10) is False  # released


async def test_fill_without_the_lease_stores_nothing(backend: CacheBackend) -> None:
    assert await backend.lease("k", "t1", 5) is True
    assert await backend.fill("k", "someone-else", b"v", 10) is False
    assert await backend.get("k") is None


async def test_an_invalidation_voids_a_lease_so_a_racing_fill_loses(
    backend: CacheBackend,
) -> None:
    """A read fetched v1, a write committed v2 and invalidated: v1 must not be stored."""
    assert await backend.lease("k", "reader", 5) is True
    await backend.delete(["k"])
    assert await backend.fill("k", "reader", b"v1", 10) is False
    assert await backend.get("k") is None


async def test_a_set_voids_a_lease(backend: CacheBackend) -> None:
    assert await backend.lease("k", "reader", 5) is True
    await backend.set("k", b"v2", 10)
    assert await backend.fill("k", "reader", b"v1", 10) is False
    assert await backend.get("k") == b"v2"


async def test_clear_removes_every_entry_and_lease(backend: CacheBackend) -> None:
    for n in range(5):
        await backend.set(f"k{n}", b"v", 10)
    assert await backend.lease("leased", "t", 5) is True
    await backend.clear()
    for n in range(5):
        assert await backend.get(f"k{n}") is None
    assert await backend.lease("leased", "t2", 5) is True


async def test_after_distrust_older_a_new_value_can_be_stored_and_read(
    backend: CacheBackend,
) -> None:
    await backend.distrust_older()
    assert await backend.lease("k", "t", 5) is True
    assert await backend.fill("k", "t", b"fresh", 10) is True
    assert await backend.get("k") == b"fresh"


# -- what only one backend does -------------------------------------------------


async def test_memory_entries_and_leases_expire_on_the_clock() -> None:
    clock = Clock()
    store = MemoryBackend(10, clock=clock)
    await store.set("k", b"v", 10)
    clock.now += 9.99
    assert await store.get("k") == b"v"
    clock.now += 0.02
    assert await store.get("k") is None
    assert await store.lease("k2", "t", 1) is True
    clock.now += 1.01
    assert await store.lease("k2", "t2", 1) is True  # an expired lease is free again


async def test_memory_evicts_the_least_recently_used_beyond_max_entries() -> None:
    store = MemoryBackend(3, clock=Clock())
    for key in "abc":
        await store.set(key, b"v", 10)
    assert await store.get("a") == b"v"  # "a" is now the most recently used
    await store.set("d", b"v", 10)
    assert store.entries() == 3
    assert await store.get("b") is None
    assert [await store.get(k) for k in "acd"] == [b"v", b"v", b"v"]


async def test_redis_values_from_before_an_outage_are_not_trusted(
    redis_batch: RedisBatcher, redis_prefix: str
) -> None:
    """One instance distrusts, after its outage, what it might have missed invalidating."""
    cut_off = RedisBackend(redis_batch, redis_prefix)
    other = RedisBackend(redis_batch, redis_prefix)
    await cut_off.set("k", b"old", 10)
    await cut_off.distrust_older()
    assert await cut_off.get("k") is None
    assert await cut_off.lease("k", "t", 5) is True  # reload and overwrite it
    assert await other.get("k") == b"old"  # another instance's trust is its own
    assert await cut_off.fill("k", "t", b"new", 10) is True
    assert await cut_off.get("k") == b"new"
    assert await other.get("k") == b"new"


@pytest.mark.parametrize("garbage", [b"no-separator", b"x|value"])
async def test_redis_ignores_values_it_did_not_write(
    redis_batch: RedisBatcher, redis_prefix: str, garbage: bytes
) -> None:
    store = RedisBackend(redis_batch, redis_prefix)
    await redis_batch.client.set(f"{redis_prefix}cache:k", garbage)
    assert await store.get("k") is None
