"""The per-shard guard (`Shard`): fail fast while down, come back after `retry_after`,
time out slow queries, count queries. Real backends; a clock the test moves."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from app.sharding.backend import Row, ShardBackend, ShardUnavailable
from app.sharding.postgres import PostgresBackend
from app.sharding.shards import Shard, ShardMetrics
from app.sharding.sqlite import SQLiteBackend
from tests.support.clock import Clock

RETRY_AFTER = 10.0


class CountingSQLite(SQLiteBackend):
    """The real SQLite backend, counting what reaches it."""

    calls = 0

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        self.calls += 1
        return await super().fetch(sql, *args)

    def transaction(self):  # type: ignore[no-untyped-def]  # whatever the parent returns
        self.calls += 1
        return super().transaction()

    async def ping(self) -> None:
        self.calls += 1
        await super().ping()


def queries_total(registry: CollectorRegistry, shard: str = "shard.0") -> float:
    value = registry.get_sample_value("keel_shard_queries_total", {"shard": shard})
    return 0.0 if value is None else value


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
async def sqlite_backend(tmp_path: Path) -> AsyncIterator[CountingSQLite]:
    backend = CountingSQLite("shard.0", str(tmp_path / "shard0.db"))
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()


def guard(
    backend: ShardBackend,
    registry: CollectorRegistry,
    clock: Clock,
    *,
    index: int = 0,
    query_timeout: float = 5.0,
) -> Shard:
    return Shard(
        index,
        f"sqlite:///shard{index}.db",
        backend,
        ShardMetrics(registry),
        query_timeout=query_timeout,
        retry_after=RETRY_AFTER,
        clock=clock,
    )


async def test_a_healthy_shard_passes_calls_through(
    sqlite_backend: CountingSQLite, registry: CollectorRegistry, clock: Clock
) -> None:
    shard = guard(sqlite_backend, registry, clock)
    assert shard.name == "shard.0"
    assert shard.healthy
    assert await shard.fetch("SELECT $1 AS v", 7) == [{"v": 7}]
    async with shard.transaction() as tx:
        await tx.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
        await tx.execute("INSERT INTO t (id) VALUES ($1)", 1)
    assert await shard.fetchrow("SELECT id FROM t") == {"id": 1}
    assert shard.healthy


async def test_after_an_outage_calls_fail_fast_without_touching_the_backend(
    sqlite_backend: CountingSQLite, registry: CollectorRegistry, clock: Clock
) -> None:
    shard = guard(sqlite_backend, registry, clock)
    assert await shard.fetch("SELECT 1 AS ok") == [{"ok": 1}]
    await sqlite_backend.close()  # the shard goes away underneath

    with pytest.raises(ShardUnavailable) as first:
        await shard.fetch("SELECT 1 AS ok")
    assert first.value.shard == "shard.0"
    assert first.value.retry_after == pytest.approx(RETRY_AFTER)
    assert not shard.healthy
    assert shard.last_error

    reached = sqlite_backend.calls
    clock.now += 4
    with pytest.raises(ShardUnavailable) as fast:
        await shard.fetch("SELECT 1 AS ok")
    assert fast.value.retry_after == pytest.approx(RETRY_AFTER - 4)
    assert fast.value.shard == "shard.0"
    clock.now += 5.5
    with pytest.raises(ShardUnavailable) as fast_tx:
        async with shard.transaction():
            pass
    assert fast_tx.value.retry_after == pytest.approx(0.5)
    with pytest.raises(ShardUnavailable):
        await shard.fetchrow("SELECT 1 AS ok")
    assert sqlite_backend.calls == reached, "a call reached the backend while marked down"


async def test_after_retry_after_the_next_call_goes_through_and_heals(
    sqlite_backend: CountingSQLite, registry: CollectorRegistry, clock: Clock
) -> None:
    shard = guard(sqlite_backend, registry, clock)
    await sqlite_backend.close()
    with pytest.raises(ShardUnavailable):
        await shard.fetch("SELECT 1 AS ok")

    # Past retry_after, still down: the call is tried, fails, and the wait starts again.
    clock.now += RETRY_AFTER + 0.1
    reached = sqlite_backend.calls
    with pytest.raises(ShardUnavailable) as again:
        await shard.fetch("SELECT 1 AS ok")
    assert sqlite_backend.calls == reached + 1
    assert again.value.retry_after == pytest.approx(RETRY_AFTER)
    with pytest.raises(ShardUnavailable):
        await shard.fetch("SELECT 1 AS ok")
    assert sqlite_backend.calls == reached + 1

    # Back: past retry_after the next call goes through and the shard is healthy.
    await sqlite_backend.open()
    clock.now += RETRY_AFTER + 0.1
    assert await shard.fetch("SELECT 1 AS ok") == [{"ok": 1}]
    assert shard.healthy
    assert shard.last_error == ""
    async with shard.transaction() as tx:
        assert await tx.fetchval("SELECT 2 AS two") == 2


async def test_a_failure_inside_a_transaction_marks_the_shard_down(
    sqlite_backend: CountingSQLite, registry: CollectorRegistry, clock: Clock
) -> None:
    shard = guard(sqlite_backend, registry, clock)
    await sqlite_backend.close()
    with pytest.raises(ShardUnavailable):
        async with shard.transaction() as tx:
            await tx.execute("SELECT 1")
    assert not shard.healthy


async def test_a_bug_in_sql_does_not_mark_the_shard_down(
    sqlite_backend: CountingSQLite, registry: CollectorRegistry, clock: Clock
) -> None:
    shard = guard(sqlite_backend, registry, clock)
    with pytest.raises(sqlite3.OperationalError):
        await shard.fetch("SELECT * FROM no_such_table")
    assert shard.healthy
    assert await shard.fetch("SELECT 1 AS ok") == [{"ok": 1}]


async def test_ping_reaches_the_backend_even_while_marked_down(
    sqlite_backend: CountingSQLite, registry: CollectorRegistry, clock: Clock
) -> None:
    """The health loop pings to find out whether a down shard is back."""
    shard = guard(sqlite_backend, registry, clock)
    await sqlite_backend.close()
    with pytest.raises(ShardUnavailable):
        await shard.fetch("SELECT 1 AS ok")
    await sqlite_backend.open()
    await shard.ping()
    assert shard.healthy


async def test_queries_are_counted_per_shard(
    tmp_path: Path, sqlite_backend: CountingSQLite, registry: CollectorRegistry, clock: Clock
) -> None:
    other_backend = SQLiteBackend("shard.1", str(tmp_path / "shard1.db"))
    await other_backend.open()
    try:
        metrics = ShardMetrics(registry)
        shards = [
            Shard(i, f"sqlite:///s{i}.db", b, metrics, query_timeout=5, retry_after=1, clock=clock)
            for i, b in enumerate((sqlite_backend, other_backend))
        ]
        assert queries_total(registry, "shard.0") == 0
        for _ in range(5):
            await shards[0].fetch("SELECT 1 AS ok")
        await shards[1].fetch("SELECT 1 AS ok")
        assert queries_total(registry, "shard.0") == 5
        assert queries_total(registry, "shard.1") == 1
        async with shards[0].transaction() as tx:
            await tx.execute("CREATE TABLE t (id INTEGER)")
        assert queries_total(registry, "shard.0") > 6  # statements in a transaction count too
    finally:
        await other_backend.close()


async def test_a_query_slower_than_query_timeout_marks_the_shard_down(
    pg_databases: Callable[[], Awaitable[str]], registry: CollectorRegistry, clock: Clock
) -> None:
    backend = PostgresBackend("shard.0", await pg_databases(), query_timeout=30)
    await backend.open()
    try:
        shard = guard(backend, registry, clock, query_timeout=0.2)
        started = time.monotonic()
        with pytest.raises(ShardUnavailable) as caught:
            await shard.fetch("SELECT pg_sleep(1)")
        assert time.monotonic() - started < 0.8
        assert caught.value.retry_after == pytest.approx(RETRY_AFTER)
        assert not shard.healthy
        assert "0.2" in shard.last_error
        assert queries_total(registry) == 1
        with pytest.raises(ShardUnavailable):  # fail fast now
            await shard.fetch("SELECT 1 AS ok")
        clock.now += RETRY_AFTER + 1
        assert await shard.fetch("SELECT 1 AS ok") == [{"ok": 1}]
        assert shard.healthy
    finally:
        await backend.close()
