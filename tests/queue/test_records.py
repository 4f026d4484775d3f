"""Job records on the shards, on SQLite and PostgreSQL: they follow a reshard, and
idempotency keys bind one job for 24 hours."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable

import pytest

from app.queue.records import IDEMPOTENCY_WINDOW, JobStore, fingerprint
from app.sharding.commands import connected
from app.sharding.migrations import migrate
from app.sharding.reshard import reshard
from tests.support.apps import ConfigFactory
from tests.support.clock import Clock


@pytest.fixture(params=["sqlite", "postgresql"])
def make_dsns(request: pytest.FixtureRequest) -> Callable[[], Awaitable[list[str]]]:
    """`await make_dsns()`: three shard DSNs of this run's dialect."""
    if request.param == "sqlite":

        async def sqlite() -> list[str]:
            return [f"sqlite:///jobs{i}.db" for i in range(3)]

        return sqlite
    pg_databases = request.getfixturevalue("pg_databases")

    async def postgresql() -> list[str]:
        return [await pg_databases() for _ in range(3)]

    return postgresql


async def test_jobs_and_keys_follow_a_reshard(
    make_config: ConfigFactory, make_dsns: Callable[[], Awaitable[list[str]]]
) -> None:
    dsns = await make_dsns()
    two = make_config(SHARDING__SHARDS=json.dumps(dsns[:2]))
    three = make_config(SHARDING__SHARDS=json.dumps(dsns))
    async with connected(two) as shards:
        for shard in shards:
            await migrate(shard.name, shard.backend)
        store = JobStore(shards)
        ids = []
        for n in range(40):
            claim = await store.claim_key(f"key-{n}", store.new_id(), "digest")
            await store.insert(
                claim.job_id,
                "demo.echo",
                {"n": n},
                max_attempts=3,
                run_at=0,
                relay_after=0,
                idempotency_key=f"key-{n}",
            )
            ids.append(claim.job_id)
    async with connected(three) as shards:
        for shard in shards:
            await migrate(shard.name, shard.backend)
        report = await reshard(shards)
        assert report.moved > 0
        store = JobStore(shards)
        for n, job_id in enumerate(ids):
            record = await store.get(job_id)
            assert record is not None
            assert record.args == {"n": n}
            again = await store.claim_key(f"key-{n}", "another", "digest")
            assert (again.job_id, again.fresh) == (job_id, False)


async def test_a_key_names_its_job_for_24_hours_then_a_new_one(
    make_config: ConfigFactory, make_dsns: Callable[[], Awaitable[list[str]]]
) -> None:
    dsns = await make_dsns()
    async with connected(make_config(SHARDING__SHARDS=json.dumps(dsns[:1]))) as shards:
        await migrate(shards.shards[0].name, shards.shards[0].backend)
        clock = Clock(1_000_000.0)
        store = JobStore(shards, clock=clock)
        digest = fingerprint("demo.echo", {}, 0.0, 5)
        first = await store.claim_key("k", "job-1", digest)
        assert (first.job_id, first.fresh) == ("job-1", True)
        clock.now += IDEMPOTENCY_WINDOW - 1
        assert (await store.claim_key("k", "job-2", digest)).job_id == "job-1"
        clock.now += 2
        later = await store.claim_key("k", "job-3", digest)
        assert (later.job_id, later.fresh) == ("job-3", True)
        assert await store.delete_expired(retention=0) == 0  # keys only: jobs kept forever


async def test_every_record_transition_on_both_dialects(
    make_config: ConfigFactory, make_dsns: Callable[[], Awaitable[list[str]]]
) -> None:
    dsns = await make_dsns()
    async with connected(make_config(SHARDING__SHARDS=json.dumps(dsns[:1]))) as shards:
        await migrate(shards.shards[0].name, shards.shards[0].backend)
        clock = Clock(time.time())  # records carry wall-clock times
        store = JobStore(shards, clock=clock)
        shard = shards.shards[0]
        record, created = await store.insert(
            "j1", "demo.echo", {"a": [1]}, max_attempts=2, run_at=5.0, relay_after=clock.now + 10
        )
        assert created
        assert record == await store.get("j1")  # what was written, without reading it back
        assert (record.status, record.attempts, record.published, record.run_at) == (
            "queued",
            0,
            False,
            5.0,
        )
        assert (await store.insert("j1", "x", {}, max_attempts=1, run_at=0, relay_after=0))[
            1
        ] is False
        assert await store.outbox_backlog() == 0  # the request holds it: not the relay's yet
        assert await store.claim_unpublished(shard, 10, 30) == []
        await store.hand_to_relay("j1")
        assert await store.outbox_backlog() == 1
        (claimed,) = await store.claim_unpublished(shard, 10, 30)
        assert claimed.id == "j1"
        assert await store.claim_unpublished(shard, 10, 30) == []  # claimed now
        assert await store.outbox_backlog() == 0  # being published
        clock.now += 30  # the relay died holding its claim
        assert await store.outbox_backlog() == 1
        await store.mark_published("j1")
        assert await store.outbox_backlog() == 0

        running = await store.start("j1", 1)
        assert running is not None
        assert (running.status, running.attempts) == ("running", 1)
        assert await store.finish("j1", 0, "succeeded", result="stale") is None  # earlier
        failed = await store.finish("j1", 1, "failed", error="boom")
        assert failed is not None
        assert (failed.status, failed.attempts, failed.error) == ("failed", 1, "boom")
        assert await store.finish("j1", 1, "succeeded") is None  # failed at this attempt
        assert await store.start("j1", 1) is None
        await store.start("j1", 2)
        returned = await store.mark_returned("j1", 2)
        assert returned is not None
        assert (returned.status, returned.attempts) == ("queued", 1)
        # A quick attempt is recorded once, with its outcome: never shown running.
        done = await store.finish("j1", 2, "succeeded", result={"ok": True})
        assert done is not None
        assert (done.status, done.attempts, done.result, done.error) == (
            "succeeded",
            2,
            {"ok": True},
            None,
        )
        assert await store.start("j1", 2) is None  # succeeded stays so
        assert await store.finish("j1", 3, "dead", error="late") is None
        assert await store.mark_poisoned("j1", 2, "poison") is None  # succeeded stays so

        requeued = await store.mark_requeued("j1", clock.now)
        assert requeued is not None
        assert (requeued.status, requeued.attempts, requeued.published) == ("queued", 0, False)
        poisoned = await store.mark_poisoned("j1", 1, "poison")
        assert poisoned is not None
        assert (poisoned.status, poisoned.error) == ("dead", "poison")
        clock.now += 10 * 86400  # past the retention of 7 days
        assert await store.delete_expired(retention=7 * 86400) == 1
        assert await store.get("j1") is None
