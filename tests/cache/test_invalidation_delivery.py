"""An invalidation reaches the backend before `delete` returns, past a refusing guard.

After an outage the instances heal one by one, so a writer whose guard still
refuses Redis may be the last: another instance may already read the cache.
Writers therefore deliver what they invalidate past the guard, share the
attempts when the backend is unreachable (two at most per writer), and keep
off it only when the operator forced the breaker open.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from prometheus_client import CollectorRegistry

from app.breakers.breaker import Breaker
from app.cache.cache import Cache, CacheMetrics, CacheTimes
from app.cache.memory import MemoryBackend
from app.core.guard import MinimalGuard
from tests.support.breakers import touchy_breaker
from tests.support.clock import Clock


class Unreachable(Exception):
    pass


class SwitchableBackend(MemoryBackend):
    """The in-process backend, made unreachable at will (a call then fails after a
    moment, as a timeout does); counts the deletes that reached it."""

    errors = (Unreachable,)

    def __init__(self, clock: Clock) -> None:
        super().__init__(1000, clock=clock)
        self.reachable = True
        self.delete_calls = 0

    async def _reach(self) -> None:
        await asyncio.sleep(0.01)
        if not self.reachable:
            raise Unreachable("timed out")

    async def get(self, key: str) -> bytes | None:
        await self._reach()
        return await super().get(key)

    async def delete(self, keys: Sequence[str]) -> None:
        self.delete_calls += 1
        await self._reach()
        await super().delete(keys)

    async def distrust_older(self) -> None:
        await self._reach()
        await super().distrust_older()


def cache_on(backend: SwitchableBackend, guard: MinimalGuard | Breaker) -> Cache:
    return Cache(
        backend, CacheTimes(ttl=60, negative_ttl=5), CacheMetrics(CollectorRegistry()), guard=guard
    )


async def test_a_refusing_guard_does_not_keep_an_invalidation_from_a_reachable_backend(
    clock: Clock,
) -> None:
    backend = SwitchableBackend(clock)
    guard = MinimalGuard("redis", open_seconds=3600)
    cache = cache_on(backend, guard)
    await cache.set("item:1", {"version": 1})
    backend.reachable = False
    assert await cache.get("item:1") is None  # the outage, seen: the guard opens
    assert not guard.allow()
    backend.reachable = True  # back, but this instance's guard refuses for an hour

    await cache.delete("item:1")
    assert await MemoryBackend.get(backend, "item:1") is None  # delivered before returning
    assert cache.pending == set()
    assert cache.usable
    assert guard.allow()  # the delivery counted as the guard's probe


async def test_writers_share_the_attempts_while_the_backend_is_unreachable(clock: Clock) -> None:
    backend = SwitchableBackend(clock)
    cache = cache_on(backend, MinimalGuard("redis", open_seconds=3600))
    backend.reachable = False
    assert await cache.get("item:0") is None  # the outage, seen
    before = backend.delete_calls

    await asyncio.gather(*(cache.delete(f"item:{n}") for n in range(20)))
    # The first writer's attempt, then one begun after the others remembered theirs.
    assert backend.delete_calls - before == 2
    assert cache.pending == {f"item:{n}" for n in range(20)}

    backend.reachable = True
    await cache.delete("item:20")  # one more write: everything pending goes with it
    assert cache.pending == set()
    assert cache.usable


async def test_an_operator_forced_open_breaker_keeps_invalidations_off_the_backend(
    clock: Clock,
) -> None:
    breaker = touchy_breaker("redis", clock)
    backend = SwitchableBackend(clock)
    cache = cache_on(backend, breaker)
    await cache.set("item:1", {"version": 1})
    breaker.machine.force_open()
    before = backend.delete_calls

    await cache.delete("item:1")
    assert backend.delete_calls == before
    assert cache.pending == {"item:1"}  # delivered when the operator resets the breaker
    breaker.machine.reset()
    assert await cache.heal()
    assert await MemoryBackend.get(backend, "item:1") is None
