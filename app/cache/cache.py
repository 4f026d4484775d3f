"""Cache-aside over a backend: single-flight, leases, TTL jitter, and outage safety.

`get_or_load(key, loader)` answers from the cache, or loads once and stores:

- In one process, concurrent misses for a key share one load (single-flight).
- Across instances, the backend's lease lets one caller load a cold key; the
  others wait briefly for its value, then load without storing.
- TTLs get ±10% jitter so entries written together do not expire together.
  A None result (a 404) is cached too, for `negative_ttl`.

Redis trouble costs latency, not errors. Every Redis call asks the `redis`
guard first; a refused or failed call *bypasses* the cache: reads go to the
loader, invalidations that could not be delivered are remembered. Until they
are replayed (and, after an outage, the backend told to distrust older values)
this instance does not read the cache at all, so a value overwritten during a
partition is never served after it heals. A background task heals as soon as
the guard lets a call through.

Instances heal one by one: another may be back on the cache while this one's
guard still refuses Redis. So a writer does not wait for its guard: `delete`
delivers the invalidation (and anything pending) past it before the write is
acknowledged, and gives up only when an attempt begun after the write found
Redis unreachable — then no instance can read the cache either.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from functools import partial, wraps
from typing import Any, Literal, ParamSpec, TypeVar

from aiohttp import web
from prometheus_client import CollectorRegistry

from app.cache.backend import CacheBackend
from app.cache.read_ahead import ReadAhead
from app.core.guard import Guard, Refused, call_guarded
from app.core.json_codec import dumps, loads
from app.core.loop_metrics import LoopCounter
from app.core.outage import Outage

log = logging.getLogger("keel.cache")

LookupStatus = Literal["hit", "miss", "bypass"]
# RFC 9211 Cache-Status values, by how the answer was produced.
CACHE_STATUS: dict[LookupStatus, str] = {
    "hit": "keel; hit",
    "miss": "keel; fwd=miss",
    "bypass": "keel; fwd=bypass",
}

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Lookup:
    value: Any
    status: LookupStatus


class Bypass(Exception):
    """The cache cannot be used for this call; `failed` when a call was tried and failed."""

    def __init__(self, failed: bool = False) -> None:
        self.failed = failed


class CacheMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        requests = LoopCounter(  # counted on the event loop (app/core/loop_metrics.py)
            "keel_cache_requests",
            "Cache lookups by result (hit, miss, bypass: cache unavailable, error: call failed).",
            ("result",),
            registry=registry,
        )
        self.hit = requests.labels("hit")
        self.miss = requests.labels("miss")
        self.bypass = requests.labels("bypass")
        self.error = requests.labels("error")


@dataclass
class CacheTimes:
    """The settings `Cache` uses, replaceable live (SIGHUP)."""

    ttl: float
    negative_ttl: float
    lease_seconds: float = 2.0
    wait_seconds: float = 0.2


class Cache:
    """The public cache API: `get`, `set`, `delete`, `get_or_load` and `cached`."""

    def __init__(
        self,
        backend: CacheBackend,
        times: CacheTimes,
        metrics: CacheMetrics,
        *,
        guard: Guard | None = None,
        max_pending: int = 10_000,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.backend = backend
        self.times = times
        self.metrics = metrics
        # Asked before every backend call (the `redis` breaker); None: nothing can fail.
        self.guard = guard
        self.max_pending = max_pending
        self._jitter = jitter
        self._flights: dict[str, asyncio.Future[Lookup]] = {}
        # Lease tokens: unique across instances (pid, object) and cheap to make.
        self._token_prefix = f"{os.getpid()}-{id(self):x}-"
        self._token_numbers = itertools.count()
        # Outage bookkeeping: invalidations not delivered, and whether the
        # backend may hold values that missed some (then: distrust on recovery).
        self.pending: set[str] = set()
        self._flush_all = False
        self._dirty = False
        self._healing = asyncio.Lock()
        # Heal attempts so far, and the last one that found the backend unreachable.
        self._heal_attempts = 0
        self._last_unreachable_attempt = 0
        self.outage = Outage("cache backend", log)
        self.hits = 0
        self.misses = 0

    # -- time to live -----------------------------------------------------

    def jittered(self, ttl: float) -> float:
        """`ttl` ±10%, so entries stored together do not expire together."""
        return ttl * (0.9 + 0.2 * self._jitter())

    def _ttl_for(self, value: Any, ttl: float | None) -> float:
        base = self.times.negative_ttl if value is None else (ttl or self.times.ttl)
        return self.jittered(base)

    # -- guarded backend calls ------------------------------------------------

    async def _call(self, op: Callable[[], Awaitable[R]], *, past_the_guard: bool = False) -> R:
        """Run one backend call through the guard; Bypass if refused or failed.
        `past_the_guard`: without asking it (a success then counts as its probe)."""
        guard = self.guard
        if guard is None:
            return await op()
        errors = self.backend.errors
        try:
            if not past_the_guard:
                return await call_guarded(guard, op, errors)
            result = await op()
        except Refused:
            self._dirty = True  # an outage seen from here: values may have missed invalidations
            raise Bypass() from None
        except errors as exc:
            self.outage.failed(exc, "bypassing the cache")
            self._dirty = True
            raise Bypass(failed=True) from exc
        guard.probe_succeeded()
        return result

    @property
    def usable(self) -> bool:
        return not (self._dirty or self.pending or self._flush_all)

    async def _ready(self) -> bool:
        """May this call use the cache? Heals first if needed; never waits on a heal in progress."""
        if self.usable:
            return True
        if self._healing.locked():
            return False
        return await self.heal()

    async def heal(self) -> bool:
        """Replay undelivered invalidations and distrust older values; True when usable."""
        if self.usable:
            return True
        async with self._healing:
            return self.usable or await self._heal_locked()

    async def _heal_locked(self, *, past_the_guard: bool = False) -> bool:
        self._heal_attempts += 1
        attempt = self._heal_attempts
        call = partial(self._call, past_the_guard=past_the_guard)
        try:
            if self._flush_all:
                await call(self.backend.clear)
                self._flush_all = False
            while self.pending:
                batch = list(itertools.islice(self.pending, 500))
                await call(partial(self.backend.delete, batch))
                self.pending.difference_update(batch)
            await call(self.backend.distrust_older)
        except Bypass as bypass:
            if bypass.failed:
                self._last_unreachable_attempt = attempt
            return False
        self._dirty = False
        self.outage.recovered("invalidations replayed, older values distrusted")
        return True

    async def _deliver_now(self, keys: Iterable[str]) -> None:
        """Deliver remembered invalidations before the writer answers, past the guard
        (see the module's docstring). Writers queue on one attempt at a time; an attempt
        begun after `keys` were remembered that could not reach the backend ends the wait
        for every writer behind it, so a writer waits for two attempts at most."""
        guard = self.guard
        if guard is not None and guard.state == "forced_open":
            return  # the operator keeps every call off Redis: so is every reader
        remembered_at = self._heal_attempts
        async with self._healing:
            undelivered = self._flush_all or not self.pending.isdisjoint(keys)
            if undelivered and self._last_unreachable_attempt <= remembered_at:
                await self._heal_locked(past_the_guard=True)

    # -- the public API ---------------------------------------------------

    async def get(self, key: str, default: Any = None) -> Any:
        """The cached value, or `default` when missing or when the cache is unavailable."""
        try:
            if not (self.usable or await self._ready()):
                raise Bypass()
            raw = await self._call(lambda: self.backend.get(key))
        except Bypass:
            return default
        return default if raw is None else loads(raw)

    async def set(self, key: str, value: Any, ttl: float | None = None) -> bool:
        """Store a JSON-serializable value; False when the cache is unavailable."""
        data = dumps(value)
        try:
            if not (self.usable or await self._ready()):
                raise Bypass()
            await self._call(lambda: self.backend.set(key, data, self._ttl_for(value, ttl)))
        except Bypass:
            self._remember([key])  # whatever was there may be older than `value`
            await self._deliver_now([key])
            return False
        return True

    async def delete(self, *keys: str) -> None:
        """Invalidate: never fails. Delivered before it returns, past the guard if need be,
        unless Redis cannot be reached; then it is delivered on recovery."""
        for key in keys:
            self._flights.pop(key, None)  # later readers must not join a read from before
        if self.usable:
            try:
                await self._call(lambda: self.backend.delete(keys))
                return
            except Bypass:
                pass
        self._remember(keys)
        await self._deliver_now(keys)

    def _remember(self, keys: Iterable[str]) -> None:
        self.pending.update(keys)
        if len(self.pending) > self.max_pending:
            self.pending.clear()
            self._flush_all = True  # too many to replay one by one: clear the cache instead

    def read_ahead(self, key: str) -> ReadAhead | None:
        """A lease step for `key` that another script call may carry (`app.cache.read_ahead`);
        None when the backend has none, or when this lookup should go the usual way."""
        if not self.usable or key in self._flights:
            return None
        token = self._new_token()
        step = self.backend.lease_step(key, token, self.times.lease_seconds)
        return ReadAhead(key, token, step) if step is not None else None

    def _new_token(self) -> str:
        return self._token_prefix + str(next(self._token_numbers))

    async def get_or_load(
        self,
        key: str,
        loader: Callable[[], Awaitable[Any]],
        ttl: float | None = None,
        ahead: ReadAhead | None = None,
    ) -> Lookup:
        """The value from the cache, or from `loader()` (then stored). Never raises for
        the cache's sake; what `loader` raises propagates. `ahead`: the request's read-ahead,
        used when it was answered for this key."""
        leased: bytes | bool | None = None
        if ahead is not None and ahead.answered and ahead.key == key:
            leased = self.backend.leased(ahead.reply)
            if isinstance(leased, bytes):
                return self._hit(leased)
        else:
            ahead = None
        flight = self._flights.get(key)
        if flight is not None and leased is not True:  # a lease holder loads: others wait on it
            await asyncio.wait([flight])
            if not flight.cancelled():
                return flight.result()
        flight = asyncio.get_running_loop().create_future()
        self._flights[key] = flight
        try:
            lookup = await self._lookup(key, loader, ttl, ahead)
        except BaseException as exc:
            if isinstance(exc, Exception):
                flight.set_exception(exc)
                flight.exception()  # retrieved here: followers re-raise it themselves
            else:
                flight.cancel()
            raise
        else:
            flight.set_result(lookup)
            return lookup
        finally:
            if self._flights.get(key) is flight:
                del self._flights[key]

    async def _lookup(
        self,
        key: str,
        loader: Callable[[], Awaitable[Any]],
        ttl: float | None,
        ahead: ReadAhead | None = None,
    ) -> Lookup:
        found: bytes | bool
        if ahead is not None:  # a miss read ahead: the lease is decided already
            token, found = ahead.token, self.backend.leased(ahead.reply)
        else:
            token = self._new_token()
            try:
                if not (self.usable or await self._ready()):
                    raise Bypass()
                found = await self._call(
                    lambda: self.backend.lease(key, token, self.times.lease_seconds)
                )
            except Bypass as bypass:
                (self.metrics.error if bypass.failed else self.metrics.bypass).inc()
                return Lookup(await loader(), "bypass")
            if isinstance(found, bytes):
                return self._hit(found)
        self.misses += 1
        self.metrics.miss.inc()
        if found is False:  # another instance is loading it: give it a moment
            value = await self._wait_for_other_loader(key)
            if value is not None:
                return Lookup(loads(value), "miss")
            return Lookup(await loader(), "miss")
        value = await loader()
        data = dumps(value)
        # If the fill cannot be made, the value is served anyway; the next reader loads it.
        with contextlib.suppress(Bypass):
            await self._call(lambda: self.backend.fill(key, token, data, self._ttl_for(value, ttl)))
        return Lookup(value, "miss")

    def _hit(self, found: bytes) -> Lookup:
        self.hits += 1
        self.metrics.hit.inc()
        return Lookup(loads(found), "hit")

    async def _wait_for_other_loader(self, key: str) -> bytes | None:
        deadline = time.monotonic() + self.times.wait_seconds
        delay = 0.005
        while time.monotonic() < deadline:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.05)
            try:
                value = await self._call(lambda: self.backend.get(key))
            except Bypass:
                return None
            if value is not None:
                return value
        return None

    def cached(
        self, ttl: float | None = None, key: Callable[..., str] | None = None
    ) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
        """Cache an async function's JSON-serializable result, per arguments.

        `key(*args, **kwargs)` names the entry; by default it is the function's
        qualified name and its arguments' reprs. Invalidate with `delete(key)`.
        """

        def decorate(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
            prefix = f"fn:{fn.__module__}.{fn.__qualname__}"

            def default_key(*args: Any, **kwargs: Any) -> str:
                parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in sorted(kwargs.items())]
                return f"{prefix}({','.join(parts)})"

            make_key = key or default_key

            @wraps(fn)
            async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
                lookup = await self.get_or_load(
                    make_key(*args, **kwargs), lambda: fn(*args, **kwargs), ttl
                )
                return lookup.value  # type: ignore[no-any-return]

            return wrapper

        return decorate

    def stats(self) -> dict[str, Any]:
        lookups = self.hits + self.misses
        return {
            "backend": self.backend.name,
            "entries": self.backend.entries(),
            "hit_ratio": round(self.hits / lookups, 4) if lookups else None,
            "hits": self.hits,
            "misses": self.misses,
            "lookups": {
                "hit": int(self.metrics.hit.value),
                "miss": int(self.metrics.miss.value),
                "bypass": int(self.metrics.bypass.value),
                "error": int(self.metrics.error.value),
            },
            "pending_invalidations": len(self.pending),
            "flush_pending": self._flush_all,
            "usable": self.usable,
            "ttl": self.times.ttl,
            "negative_ttl": self.times.negative_ttl,
        }


CACHE = web.AppKey("keel.cache", Cache)
