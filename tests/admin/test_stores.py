"""One contract per store, run on each implementation: sessions (memory, Redis) and the
audit log (memory, Redis, shards on SQLite and PostgreSQL); and the fleet's staleness."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from app.admin.audit import AuditEntry, AuditLog, MemoryAuditLog, RedisAuditLog, ShardAuditLog
from app.admin.fleet import Fleet
from app.admin.series import Point
from app.admin.sessions import MemorySessionStore, RedisSessionStore, SessionStore
from app.core.config_schema import SecretUrl
from app.core.guard import MinimalGuard
from app.redis import RedisService, RedisSettings
from app.sharding.backend import ShardBackend
from app.sharding.migrations import migrate
from app.sharding.placement import Placement
from app.sharding.postgres import PostgresBackend
from app.sharding.shards import Shard, ShardMetrics, ShardSet
from app.sharding.sqlite import SQLiteBackend
from tests.support.clock import Clock


@pytest.fixture
async def redis_service(redis_url: str, redis_prefix: str) -> AsyncIterator[RedisService]:
    """The redis plugin's service, connected to the machine's Redis under this test's prefix."""
    settings = RedisSettings(url=SecretUrl(redis_url), key_prefix=redis_prefix)
    service = RedisService(settings, MinimalGuard("redis"))
    service.open()
    try:
        yield service
    finally:
        await service.close()


# --- sessions -----------------------------------------------------------------------------


@pytest.fixture(params=["memory", "redis"])
def make_sessions(
    request: pytest.FixtureRequest,
) -> Callable[[float, Callable[[], float]], SessionStore]:
    if request.param == "memory":
        return lambda ttl, clock: MemorySessionStore(ttl, clock)
    service: RedisService = request.getfixturevalue("redis_service")
    return lambda ttl, clock: RedisSessionStore(service, ttl, clock)


async def test_a_session_is_created_read_and_ended(make_sessions: Any) -> None:
    store = make_sessions(60, time.time)
    session = await store.create("operator")
    again = await store.get(session.id)
    assert again == session
    assert (await store.create("operator")).id != session.id
    assert len(session.csrf) >= 32
    assert session.csrf != session.id
    assert await store.get("no-such-session") is None
    assert await store.delete(session.id) is True
    assert await store.get(session.id) is None
    assert await store.delete(session.id) is False


async def test_a_session_ends_after_its_ttl(make_sessions: Any) -> None:
    clock = Clock(1000.0)
    store = make_sessions(60, clock)
    session = await store.create("viewer")
    clock.now = 1059.0
    assert (await store.get(session.id)) is not None
    clock.now = 1060.0
    assert await store.get(session.id) is None


async def test_redis_keeps_sessions_for_their_ttl_under_a_hash(
    redis_service: RedisService, redis_prefix: str
) -> None:
    store = RedisSessionStore(redis_service, 30)
    session = await store.create("operator")
    assert redis_service.client is not None
    keys = [k.decode() async for k in redis_service.client.scan_iter(match=f"{redis_prefix}*")]
    (key,) = keys
    assert session.id not in key  # what Redis holds cannot be replayed as a cookie
    assert 29_000 < await redis_service.client.pttl(key) <= 30_000
    raw = await redis_service.client.get(key)
    assert isinstance(raw, bytes)
    assert session.id.encode() not in raw


# --- the audit log ------------------------------------------------------------------------


def entry(n: int, **fields: Any) -> AuditEntry:
    values = {
        "id": f"01AUDIT{n:019d}",
        "at": f"2026-01-01T00:00:{n % 60:02d}.000Z",
        "role": "operator",
        "session": "abcd1234",
        "client": "10.0.0.1",
        "action": "breaker.reset",
        "target": f"shard.{n}",
        "result": "applied on 1",
        "instance": "i-1",
    }
    values.update(fields)
    return AuditEntry(**values)


async def open_shards(make: Callable[[], Awaitable[ShardBackend]], count: int) -> ShardSet:
    metrics = ShardMetrics(CollectorRegistry())
    shards = []
    for index in range(count):
        backend = await make()
        await backend.open()
        await migrate(f"shard.{index}", backend)
        shards.append(
            Shard(index, f"test:{index}", backend, metrics, query_timeout=5, retry_after=30)
        )
    return ShardSet(shards, Placement(count, 1024))


def backends(dialect: str, request: pytest.FixtureRequest) -> Callable[[], Awaitable[ShardBackend]]:
    """New shard backends of `dialect`: files under tmp_path, or throwaway databases."""
    if dialect == "sqlite":
        directory = request.getfixturevalue("tmp_path")
        counter = iter(range(1000))

        async def sqlite() -> ShardBackend:
            return SQLiteBackend(f"shard.{next(counter)}", str(directory / f"{next(counter)}.db"))

        return sqlite
    databases = request.getfixturevalue("pg_databases")

    async def postgres() -> ShardBackend:
        return PostgresBackend("shard", await databases(), connect_timeout=2.0)

    return postgres


@pytest.fixture(params=["sqlite", "postgresql"])
def new_backend(request: pytest.FixtureRequest) -> Callable[[], Awaitable[ShardBackend]]:
    return backends(request.param, request)


@pytest.fixture(params=["memory", "redis", "sqlite", "postgresql"])
def audit_kind(request: pytest.FixtureRequest) -> tuple[str, Any]:
    """Which store, and what it is made from (resolved here, outside the event loop)."""
    if request.param == "redis":
        return "redis", request.getfixturevalue("redis_service")
    if request.param in ("sqlite", "postgresql"):
        return "shards", backends(request.param, request)
    return "memory", None


@pytest.fixture
async def make_audit(
    audit_kind: tuple[str, Any],
) -> AsyncIterator[Callable[[int], Awaitable[AuditLog]]]:
    kind, source = audit_kind
    opened: list[ShardSet] = []

    async def make(keep: int) -> AuditLog:
        if kind == "memory":
            return MemoryAuditLog(keep)
        if kind == "redis":
            return RedisAuditLog(source, keep)
        shards = await open_shards(source, 2)
        opened.append(shards)
        return ShardAuditLog(shards, keep)

    yield make
    for shards in opened:
        for shard in shards:
            await shard.backend.close()


async def test_entries_come_back_newest_first(make_audit: Any) -> None:
    log = await make_audit(100)
    for n in range(5):
        await log.append(entry(n, role=None if n == 0 else "operator", session=None))
    newest = await log.recent(3)
    assert [e.id for e in newest] == [entry(n).id for n in (4, 3, 2)]
    assert newest[0] == entry(4, session=None)
    assert (await log.recent(100))[-1].role is None


async def test_the_log_is_capped(make_audit: Any) -> None:
    log = await make_audit(4)
    for n in range(10):
        await log.append(entry(n))
    await log.trim()
    kept = [e.id for e in await log.recent(100)]
    assert kept[:4] == [entry(n).id for n in (9, 8, 7, 6)]
    assert len(kept) == 4


async def test_a_shard_down_costs_no_entry(new_backend: Any) -> None:
    shards = await open_shards(new_backend, 2)
    try:
        log = ShardAuditLog(shards, 100)
        down = shards.shards[0]
        down.mark_down("test: unplugged")
        for n in range(6):
            await log.append(entry(n))
        assert [e.id for e in await log.recent(10)] == [entry(n).id for n in range(5, -1, -1)]
        assert log.missing == ["shard.0"]
        down.mark_up()
        assert len(await log.recent(10)) == 6
        assert log.missing == []
    finally:
        for shard in shards:
            await shard.backend.close()


# --- the fleet ----------------------------------------------------------------------------


async def test_an_instance_that_stops_reporting_is_marked_then_dropped(
    redis_service: RedisService,
) -> None:
    clock = Clock(10_000.0)
    quiet = Fleet(redis_service, "quiet", clock=clock)
    watcher = Fleet(redis_service, "watcher", clock=clock)
    point: Point = (9_999, {"GET /x": (3, 0, 1.0, 2.0)})
    await quiet.publish({"id": "quiet", "plugins": {}}, [point])
    (seen,) = await watcher.others(history=True)
    assert (seen["id"], seen["stale"]) == ("quiet", False)
    assert seen["series"]["routes"]["GET /x"]["rate"] == [3]
    clock.now += 6
    (seen,) = await watcher.others(history=False)
    assert seen["stale"] is True
    clock.now += 60
    assert await watcher.others(history=False) == []


async def test_points_are_published_once(redis_service: RedisService) -> None:
    clock = Clock(20_000.0)
    fleet = Fleet(redis_service, "one", clock=clock)
    points: list[Point] = [(19_998, {}), (19_999, {"GET /y": (1, 0, 1.0, 1.0)})]
    await fleet.publish({"id": "one"}, points)
    await fleet.publish({"id": "one"}, points)  # nothing new: nothing appended
    assert redis_service.client is not None
    assert await redis_service.client.llen(redis_service.key("admin", "series", "one")) == 2
    (seen,) = await Fleet(redis_service, "two", clock=clock).others(history=False)
    assert seen["series"]["t"] == [19_998, 19_999]
    await fleet.leave()
    assert await Fleet(redis_service, "two", clock=clock).others(history=True) == []
