"""The physical shards as one set: placement, a fail-fast guard per shard, metrics.

Each `Shard` wraps a backend: every call is timed out and counted, and after a
failure that means "cannot answer" the shard is marked down for `retry_after`
seconds, during which calls fail at once with `ShardUnavailable` instead of
waiting on a dead server — so only the requests for that shard's keys fail,
and fast.

With the breakers plugin, each shard also goes through its `shard.<n>`
breaker: calls the down-mark lets through are asked of the breaker and
reported to it, so a shard that answers but fails or slows down too often
(failure and slow-call rates) is cut off as well, with the same 503. The
down-mark stays: it is what the health loop sets and clears.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from aiohttp import web
from prometheus_client import CollectorRegistry

from app.core.config_schema import redact_url
from app.core.guard import Guard
from app.core.loop_metrics import LoopCounter, LoopHistogram
from app.core.outage import Outage
from app.core.shared_timeout import SharedTimeout
from app.sharding.backend import Queries, Row, ShardBackend, ShardUnavailable
from app.sharding.placement import Placement

T = TypeVar("T")

log = logging.getLogger("keel.sharding")


class ShardMetrics:
    """Updated on every query: plain numbers on the event loop (app/core/loop_metrics.py)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.queries = LoopCounter(
            "keel_shard_queries", "Queries sent to each shard.", ("shard",), registry=registry
        )
        self.duration = LoopHistogram(
            "keel_shard_query_duration_seconds",
            "Shard query latency.",
            ("shard",),
            registry=registry,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )
        self.transactions = LoopCounter(
            "keel_shard_transactions",
            "Write transactions committed on each shard (a group commit counts once).",
            ("shard",),
            registry=registry,
        )


class Shard:
    """One physical shard: `shard.<n>`, its backend and its health."""

    def __init__(
        self,
        index: int,
        dsn: str,
        backend: ShardBackend,
        metrics: ShardMetrics,
        *,
        query_timeout: float,
        retry_after: float,
        clock: Callable[[], float] = time.monotonic,
        breaker: Guard | None = None,
    ) -> None:
        self.index = index
        self.name = f"shard.{index}"
        self.dsn = redact_url(dsn)
        self.backend = backend
        self.query_timeout = query_timeout
        self._timeout = SharedTimeout(query_timeout)
        self.retry_after = retry_after
        self._clock = clock
        self.breaker = breaker
        self._down_until = 0.0
        # Noticed by a query or by the health loop, whichever comes first; logged once.
        self.outage = Outage(f"{self.name} ({self.dsn})", log)
        self.schema_version: int | None = None
        # Plain totals for the dashboard (which turns them into rates and mean latency).
        self.queries = 0
        self.query_seconds = 0.0
        self._queries = metrics.queries.labels(self.name)
        self._duration = metrics.duration.labels(self.name)
        backend.on_commit = metrics.transactions.labels(self.name).inc

    @property
    def healthy(self) -> bool:
        return not self.outage.active

    @property
    def last_error(self) -> str:
        return self.outage.reason

    def mark_down(self, reason: str) -> None:
        self.outage.failed(reason, "only its keys fail (503) until it is back")
        self._down_until = self._clock() + self.retry_after

    def mark_up(self) -> None:
        self.outage.recovered()
        self._down_until = 0.0

    def _refuse_while_down(self) -> None:
        remaining = self._down_until - self._clock()
        if remaining > 0:
            raise ShardUnavailable(self.name, self.last_error, retry_after=remaining)
        # Also refuse up front when the breaker is refusing (a look that takes no
        # trial slot), so a transaction is not even begun.
        if self.breaker is not None and (wait := self.breaker.retry_after()) > 0:
            raise ShardUnavailable(self.name, f"circuit {self.breaker.state}", retry_after=wait)

    async def _call(self, operation: Awaitable[T], *, guarded: bool = True) -> T:
        breaker = self.breaker if guarded else None
        if breaker is not None and not breaker.allow():
            if asyncio.iscoroutine(operation):
                operation.close()  # never awaited: do not leave a warning behind
            raise ShardUnavailable(
                self.name, f"circuit {breaker.state}", retry_after=breaker.retry_after()
            )
        self._queries.inc()
        started = time.perf_counter()
        failed = False
        try:
            # One timer for every call of the shard (`asyncio.timeout` per call
            # cost a few percent of the loop); not wait_for: on 3.11 it can
            # swallow a cancellation that races with the operation completing.
            result = await self._timeout.run(operation)
        except TimeoutError as exc:
            failed = True
            self.mark_down(f"no answer within {self.query_timeout}s")
            raise ShardUnavailable(self.name, self.last_error, self.retry_after) from exc
        except ShardUnavailable as exc:
            failed = True
            self.mark_down(exc.reason)
            exc.retry_after = self.retry_after
            raise
        finally:
            seconds = time.perf_counter() - started
            self._duration.observe(seconds)
            self.queries += 1
            self.query_seconds += seconds
            # Only "cannot answer" is a failure; a bug in SQL means the shard answered.
            if breaker is not None:
                breaker.record(not failed, seconds)
        if self.last_error:
            self.mark_up()
        return result

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        self._refuse_while_down()
        return await self._call(self.backend.fetch(sql, *args))

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        rows = await self.fetch(sql, *args)
        return rows[0] if rows else None

    async def write(self, sql: str, *args: Any) -> list[Row]:
        """One write statement as its own transaction (see `ShardBackend.write`)."""
        self._refuse_while_down()
        return await self._call(self.backend.write(sql, *args))

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Queries]:
        """A transaction on this shard; statements in it are counted and timed out too."""
        self._refuse_while_down()
        manager = self.backend.transaction()
        tx = await self._call(manager.__aenter__())
        try:
            yield _GuardedQueries(self, tx)
        except BaseException as exc:
            await manager.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        await self._call(manager.__aexit__(None, None, None))

    async def ping(self) -> None:
        # The health probe must reach a shard even while its breaker refuses; when it
        # answers, the breaker lets trial calls through now, not after open_seconds.
        await self._call(self.backend.ping(), guarded=False)
        if self.breaker is not None:
            self.breaker.probe_succeeded()


class _GuardedQueries(Queries):
    def __init__(self, shard: Shard, tx: Queries) -> None:
        self._shard = shard
        self._tx = tx

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return await self._shard._call(self._tx.fetch(sql, *args))

    async def execute(self, sql: str, *args: Any) -> int:
        return await self._shard._call(self._tx.execute(sql, *args))


class ShardSet:
    """Every physical shard, and which one owns a key."""

    def __init__(self, shards: Sequence[Shard], placement: Placement) -> None:
        self.shards = tuple(shards)
        self.placement = placement

    def for_key(self, key: str) -> Shard:
        return self.shards[self.placement.shard_of(key)]

    def __iter__(self) -> Any:
        return iter(self.shards)

    def __len__(self) -> int:
        return len(self.shards)


SHARDS = web.AppKey("keel.shards", ShardSet)
