"""Cache-aside over the in-process backend: TTLs, jitter, single-flight, the public API."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from app.cache.cache import Cache, CacheMetrics, CacheTimes
from app.cache.memory import MemoryBackend
from tests.support.clock import Clock


def make_cache(
    clock: Clock, *, ttl: float = 60, negative_ttl: float = 5, jitter: float = 0.5
) -> tuple[Cache, CollectorRegistry]:
    registry = CollectorRegistry()
    cache = Cache(
        MemoryBackend(1000, clock=clock),
        CacheTimes(ttl=ttl, negative_ttl=negative_ttl),
        CacheMetrics(registry),
        jitter=lambda: jitter,
    )
    return cache, registry


class CountingLoader:
    """A loader that counts its calls and can be held until released."""

    def __init__(self, value: Any) -> None:
        self.value = value
        self.calls = 0
        self.release = asyncio.Event()
        self.release.set()

    async def __call__(self) -> Any:
        self.calls += 1
        await self.release.wait()
        return self.value


def results(registry: CollectorRegistry) -> dict[str, float]:
    return {
        r: registry.get_sample_value("keel_cache_requests_total", {"result": r}) or 0
        for r in ("hit", "miss", "bypass", "error")
    }


@pytest.mark.parametrize(("draw", "expected"), [(0.0, 90.0), (0.5, 100.0), (1.0, 110.0)])
def test_ttl_jitter_stays_within_ten_percent(clock: Clock, draw: float, expected: float) -> None:
    cache, _ = make_cache(clock, jitter=draw)
    assert cache.jittered(100) == pytest.approx(expected)


async def test_entries_stored_together_expire_apart(clock: Clock) -> None:
    draws = iter([0.0, 1.0])
    cache, _ = make_cache(clock)
    cache._jitter = lambda: next(draws)
    await cache.set("early", 1, ttl=100)  # expires after 90 s
    await cache.set("late", 2, ttl=100)  # after 110 s
    clock.now += 95
    assert await cache.get("early") is None
    assert await cache.get("late") == 2
    clock.now += 16
    assert await cache.get("late") is None


async def test_a_miss_loads_and_stores_then_hits_until_the_ttl(clock: Clock) -> None:
    cache, registry = make_cache(clock, ttl=60)
    loader = CountingLoader({"id": "a", "version": 1})
    first = await cache.get_or_load("item:a", loader)
    second = await cache.get_or_load("item:a", loader)
    assert (first.status, second.status) == ("miss", "hit")
    assert second.value == {"id": "a", "version": 1}
    assert loader.calls == 1
    clock.now += 60.1  # ttl 60 with the middle draw of jitter
    assert (await cache.get_or_load("item:a", loader)).status == "miss"
    assert loader.calls == 2
    assert results(registry) == {"hit": 1, "miss": 2, "bypass": 0, "error": 0}
    assert cache.stats()["hit_ratio"] == pytest.approx(1 / 3, abs=1e-3)


async def test_not_found_is_cached_for_the_negative_ttl(clock: Clock) -> None:
    cache, _ = make_cache(clock, ttl=60, negative_ttl=5)
    loader = CountingLoader(None)
    assert (await cache.get_or_load("item:x", loader)).status == "miss"
    hit = await cache.get_or_load("item:x", loader)
    assert (hit.status, hit.value) == ("hit", None)
    clock.now += 5.1
    assert (await cache.get_or_load("item:x", loader)).status == "miss"
    assert loader.calls == 2


async def test_fifty_concurrent_misses_share_one_load(clock: Clock) -> None:
    cache, _ = make_cache(clock)
    loader = CountingLoader({"v": 1})
    loader.release.clear()
    lookups = [asyncio.create_task(cache.get_or_load("k", loader)) for _ in range(50)]
    await asyncio.sleep(0)
    loader.release.set()
    done = await asyncio.gather(*lookups)
    assert loader.calls == 1
    assert all(lookup.value == {"v": 1} for lookup in done)


async def test_a_failing_load_fails_every_waiter_and_the_next_call_tries_again(
    clock: Clock,
) -> None:
    cache, _ = make_cache(clock)
    calls = 0
    gate = asyncio.Event()

    async def broken() -> Any:
        nonlocal calls
        calls += 1
        await gate.wait()
        raise LookupError("shard said no")

    lookups = [asyncio.create_task(cache.get_or_load("k", broken)) for _ in range(5)]
    await asyncio.sleep(0)
    gate.set()
    outcomes = await asyncio.gather(*lookups, return_exceptions=True)
    assert calls == 1
    assert all(isinstance(o, LookupError) for o in outcomes)
    assert (await cache.get_or_load("k", CountingLoader(1))).value == 1


async def test_an_invalidation_during_a_load_is_not_undone_by_it(clock: Clock) -> None:
    """A read that started before a write must neither store nor hand out the old value
    to readers that arrive after the write."""
    cache, _ = make_cache(clock)
    old = CountingLoader({"version": 1})
    old.release.clear()
    before_write = asyncio.create_task(cache.get_or_load("k", old))
    await asyncio.sleep(0)
    await cache.delete("k")  # the write committed version 2
    new = CountingLoader({"version": 2})
    after_write = await cache.get_or_load("k", new)
    assert after_write.value == {"version": 2}
    old.release.set()
    assert (await before_write).value == {"version": 1}  # it began before the write
    assert (await cache.get_or_load("k", new)).value == {"version": 2}


async def test_get_set_delete(clock: Clock) -> None:
    cache, _ = make_cache(clock)
    assert await cache.get("k", default="none") == "none"
    assert await cache.set("k", {"n": [1, 2]}) is True
    assert await cache.get("k") == {"n": [1, 2]}
    await cache.delete("k")
    assert await cache.get("k") is None


async def test_cached_decorator_caches_per_argument(clock: Clock) -> None:
    cache, _ = make_cache(clock)
    calls: list[tuple[int, str]] = []

    @cache.cached(ttl=30)
    async def price(item: int, currency: str = "EUR") -> dict[str, Any]:
        calls.append((item, currency))
        return {"item": item, "currency": currency}

    assert await price(1) == {"item": 1, "currency": "EUR"}
    assert await price(1) == {"item": 1, "currency": "EUR"}
    assert await price(1, currency="USD") == {"item": 1, "currency": "USD"}
    assert await price(2) == {"item": 2, "currency": "EUR"}
    assert calls == [(1, "EUR"), (1, "USD"), (2, "EUR")]
    clock.now += 33.1  # 30 s +10% at most
    await price(1)
    assert len(calls) == 4


async def test_cached_decorator_with_a_key_can_be_invalidated(clock: Clock) -> None:
    cache, _ = make_cache(clock)
    loads = 0
    key: Callable[[str], str] = lambda user: f"profile:{user}"  # noqa: E731

    @cache.cached(key=key)
    async def profile(user: str) -> dict[str, int]:
        nonlocal loads
        loads += 1
        return {"loads": loads}

    assert await profile("ann") == {"loads": 1}
    assert await profile("ann") == {"loads": 1}
    await cache.delete("profile:ann")
    assert await profile("ann") == {"loads": 2}
