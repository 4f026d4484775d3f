"""Published marks: collected for a while, then one statement per shard; a job that
says "published" already (its consumer recorded it) is not written again."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest

from app.queue.published import PublishedMarks
from app.queue.records import JobStore
from app.sharding.commands import connected
from app.sharding.migrations import migrate
from tests.support.apps import ConfigFactory

DELAY = 0.3


@pytest.fixture
async def store(make_config: ConfigFactory) -> AsyncIterator[JobStore]:
    config = make_config(SHARDING__SHARDS=json.dumps([f"sqlite:///marks{i}.db" for i in range(3)]))
    async with connected(config) as shards:
        for shard in shards:
            await migrate(shard.name, shard.backend)
        yield JobStore(shards)


async def _accept(store: JobStore, count: int) -> list[str]:
    ids = [store.new_id() for _ in range(count)]
    for job_id in ids:
        await store.insert(job_id, "demo.echo", {}, max_attempts=3, run_at=0, relay_after=0)
    return ids


async def _published(store: JobStore, ids: list[str]) -> list[bool]:
    records = [await store.get(job_id) for job_id in ids]
    return [record is not None and record.published for record in records]


async def test_marks_are_written_together_once_the_delay_is_over(store: JobStore) -> None:
    marks = PublishedMarks(store, delay=DELAY)
    ids = await _accept(store, 12)
    for job_id in ids:
        marks.add(job_id)
    await asyncio.sleep(DELAY / 3)
    assert await _published(store, ids) == [False] * 12
    queries = [shard.queries for shard in store.shards]
    await asyncio.sleep(DELAY)
    # One statement per shard for the lot.
    holding = {store.shards.for_key(job_id).name for job_id in ids}
    assert [
        shard.queries - before for shard, before in zip(store.shards, queries, strict=True)
    ] == [1 if shard.name in holding else 0 for shard in store.shards]
    assert await _published(store, ids) == [True] * 12
    assert marks.written == 12


async def test_a_job_finished_before_its_mark_is_not_written_again(store: JobStore) -> None:
    (done, waiting) = await _accept(store, 2)
    assert await store.finish(done, 1, "succeeded", result=1) is not None
    shard = store.shards.for_key(done)
    assert await store.mark_published_many(shard, [done]) == 0
    marks = PublishedMarks(store, delay=DELAY)
    marks.add(done)
    marks.add(waiting)
    await marks.close()
    assert await _published(store, [done, waiting]) == [True, True]


async def test_close_writes_what_is_collected_without_waiting(store: JobStore) -> None:
    marks = PublishedMarks(store, delay=60)
    ids = await _accept(store, 5)
    for job_id in ids:
        marks.add(job_id)
    await asyncio.sleep(0)
    await asyncio.wait_for(marks.close(), timeout=5)
    assert await _published(store, ids) == [True] * 5
