"""Marking jobs published, many at a time: one statement per shard for a whole batch.

Once the queue has confirmed a job's message, its record is marked published
so that the outbox relay leaves it alone. Nothing waits on that mark — not
the 202 (the record is committed and the message confirmed: the job is
accepted), not the relay (the request that accepted the job, or the relay's
own claim, keeps other relays off it for `publish_window` / the claim's
length) — so the marks are collected for `delay` seconds (well within that
window) and written as one `UPDATE … WHERE id IN (…) AND published = 0` per
shard. Most jobs have run by then, and a consumer marks its job published
when it records the outcome: their marks find nothing to change and write
nothing, so a job costs its shard two row changes (accepted, done), not three.

Losing a mark (the shard is down, the process dies first) costs a duplicate
message, never a job: the relay publishes the job again once its claim has
expired, and the consumer recognises the duplicate from the record (delivery
is at least once). `close()` writes what is still collected, without waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict

from app.queue.records import JobStore
from app.sharding.backend import ShardUnavailable
from app.sharding.shards import Shard

log = logging.getLogger("keel.queue")

MAX_IDS = 500  # ids in one statement (SQLite allows 32766 parameters)
DELAY = 1.0  # seconds marks are collected (the publish window is 5 s and more)


class PublishedMarks:
    def __init__(self, store: JobStore, delay: float = DELAY) -> None:
        self.store = store
        self.delay = delay
        self._collected: dict[Shard, list[str]] = defaultdict(list)
        self._writing: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()
        self.written = 0
        self.lost = 0  # marks that could not be written (their jobs will be published again)

    def add(self, job_id: str) -> None:
        """Mark `job_id` published with the next batch (never raises, never waits)."""
        self._collected[self.store.shards.for_key(job_id)].append(job_id)
        if self._writing is None:
            self._writing = asyncio.get_running_loop().create_task(
                self._write(), name="keel.queue.published-marks"
            )

    async def _write(self) -> None:
        try:
            while self._collected:
                if not self._closing.is_set():
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self.delay):
                            await self._closing.wait()
                collected, self._collected = self._collected, defaultdict(list)
                await asyncio.gather(
                    *(self._write_shard(shard, ids) for shard, ids in collected.items())
                )
        finally:
            self._writing = None

    async def _write_shard(self, shard: Shard, job_ids: list[str]) -> None:
        for start in range(0, len(job_ids), MAX_IDS):
            chunk = job_ids[start : start + MAX_IDS]
            try:
                await self.store.mark_published_many(shard, chunk)
            except ShardUnavailable as exc:
                self.lost += len(chunk)
                log.warning(
                    "%d job(s) published but not marked so (%s): the relay will publish"
                    " them again, and their consumers drop the duplicates",
                    len(chunk),
                    exc,
                )
            else:
                self.written += len(chunk)

    async def close(self) -> None:
        """Write every mark collected so far, now."""
        self._closing.set()
        while (writing := self._writing) is not None:
            await asyncio.shield(writing)
