"""The limiter backend interface and its in-process implementation.

`MemoryLimiter` is the embedded default (no `[redis] url`) and the fallback
while Redis is unreachable. It is a real backend, not a test fake: the same
contract tests run against it and against `RedisLimiter`.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable

from app.ratelimit.algorithm import Decision, gcra
from app.ratelimit.limits import Limit

Clock = Callable[[], int]


def monotonic_us() -> int:
    return time.monotonic_ns() // 1000


class Limiter(abc.ABC):
    """A place where budgets are counted: `hit` spends one request of `key`'s budget."""

    name: str

    @abc.abstractmethod
    async def hit(self, key: str, limit: Limit) -> Decision:
        """Decide one request for `key` under `limit`; raise the backend's errors as they are."""

    @abc.abstractmethod
    async def forget(self, key: str) -> None:
        """Give `key` its whole budget back (a login that succeeded clears its failures)."""


class MemoryLimiter(Limiter):
    """GCRA over a dict of TATs. Expired entries are swept as the dict grows."""

    name = "memory"

    def __init__(self, clock: Clock = monotonic_us, *, sweep_at: int = 4096) -> None:
        self._clock = clock
        self._tats: dict[str, int] = {}
        self._min_sweep = sweep_at
        self._sweep_at = sweep_at

    def hit_now(self, key: str, limit: Limit) -> Decision:
        """`hit` without the coroutine: the middleware's embedded fast path."""
        now = self._clock()
        decision, booked = gcra(self._tats.get(key), now, limit.interval_us, limit.horizon_us)
        if booked is not None:
            self._tats[key] = booked
            if len(self._tats) >= self._sweep_at:
                self._sweep(now)
        return decision

    async def hit(self, key: str, limit: Limit) -> Decision:
        return self.hit_now(key, limit)

    async def forget(self, key: str) -> None:
        self._tats.pop(key, None)

    def _sweep(self, now: int) -> None:
        # A TAT in the past means a full budget: the same as no entry at all.
        self._tats = {k: tat for k, tat in self._tats.items() if tat > now}
        # Amortized O(1) per hit: sweep again only once the dict has doubled.
        self._sweep_at = max(self._min_sweep, 2 * len(self._tats))

    def clear(self) -> None:
        self._tats.clear()

    def __len__(self) -> int:
        return len(self._tats)
