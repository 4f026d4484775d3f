"""A shard behind its `shard.<n>` breaker: real SQLite, one clock the test moves for both."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from app.breakers import Breaker, BreakerRegistry, BreakersSettings
from app.sharding.backend import ShardUnavailable
from app.sharding.shards import Shard, ShardMetrics
from tests.sharding.test_shard_guard import CountingSQLite
from tests.support.clock import Clock

RETRY_AFTER = 1.0  # the shard's own down-mark
OPEN_SECONDS = 30.0  # the breaker's
SETTINGS = BreakersSettings(
    minimum_calls=2, window=2, failure_rate=50, open_seconds=OPEN_SECONDS, half_open_calls=1
)


@pytest.fixture
async def backend(tmp_path: Path) -> AsyncIterator[CountingSQLite]:
    backend = CountingSQLite("shard.0", str(tmp_path / "shard0.db"))
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()


@pytest.fixture
def breaker(clock: Clock) -> Breaker:
    return BreakerRegistry(SETTINGS, CollectorRegistry(), clock=clock).get("shard.0")


@pytest.fixture
def shard(backend: CountingSQLite, breaker: Breaker, clock: Clock) -> Shard:
    return Shard(
        0,
        "sqlite:///shard0.db",
        backend,
        ShardMetrics(CollectorRegistry()),
        query_timeout=5.0,
        retry_after=RETRY_AFTER,
        clock=clock,
        breaker=breaker,
    )


async def test_calls_are_reported_to_the_breaker(shard: Shard, breaker: Breaker) -> None:
    assert await shard.fetch("SELECT 1 AS ok") == [{"ok": 1}]
    async with shard.transaction() as tx:
        await tx.execute("SELECT 1")
    stats = breaker.stats()
    assert stats.calls == 2  # the window holds the last two
    assert stats.failures == 0


async def test_a_bug_in_sql_is_not_a_failure(shard: Shard, breaker: Breaker) -> None:
    for _ in range(3):
        with pytest.raises(sqlite3.OperationalError):
            await shard.fetch("SELECT * FROM no_such_table")
    assert breaker.state == "closed"
    assert breaker.stats().failures == 0


async def test_failures_open_the_breaker_and_the_health_probe_half_opens_it(
    shard: Shard, breaker: Breaker, backend: CountingSQLite, clock: Clock
) -> None:
    await backend.close()
    for _ in range(2):
        with pytest.raises(ShardUnavailable):
            await shard.fetch("SELECT 1 AS ok")
        clock.now += RETRY_AFTER  # past the shard's own down-mark: the next call is tried
    assert breaker.state == "open"
    with pytest.raises(ShardUnavailable):
        await shard.ping()  # a probe that fails changes nothing
    clock.now += RETRY_AFTER
    assert breaker.state == "open"

    await backend.open()
    reached = backend.calls
    with pytest.raises(ShardUnavailable) as refused:
        await shard.fetch("SELECT 1 AS ok")
    assert refused.value.shard == "shard.0"
    assert refused.value.reason == "circuit open"
    # Opened by the second failure, two RETRY_AFTERs ago.
    assert refused.value.retry_after == pytest.approx(OPEN_SECONDS - 2 * RETRY_AFTER)
    assert backend.calls == reached, "the breaker let a call through while open"

    await shard.ping()  # the health probe answers: trials now, not after OPEN_SECONDS
    assert shard.healthy
    assert breaker.state == "half_open"
    assert await shard.fetch("SELECT 1 AS ok") == [{"ok": 1}]  # the half-open trial
    assert breaker.state == "closed"


async def test_a_forced_open_breaker_refuses_transactions_without_touching_the_backend(
    shard: Shard, breaker: Breaker, backend: CountingSQLite
) -> None:
    breaker.machine.force_open()
    reached = backend.calls
    with pytest.raises(ShardUnavailable) as refused:
        async with shard.transaction():
            pytest.fail("a refused transaction must not start")
    assert refused.value.reason == "circuit forced_open"
    assert backend.calls == reached
