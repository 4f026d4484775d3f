"""The outbox relay: publishes accepted jobs that the queue has not confirmed yet.

`POST /api/jobs` writes the job's record first — that write is what "accepted"
means — and then tries to publish at once. When that fails (the broker is
down, the `amqp` breaker is open, the process died in between), the record
stays unpublished and this relay publishes it: every `relay_interval`, and at
once when the broker (re)connects.

No double publish between relays: a relay claims a batch with one conditional
UPDATE (`relay_until` in the future) before publishing, so two instances
never publish the same job at the same time, and the request that created a
job holds the claim while it publishes. What remains is the unavoidable
window of any outbox: a relay that dies after the broker's confirm and before
marking the job published leaves it to be published again after the claim
expires — a duplicate message, which the consumer recognises from the record
(delivery is at least once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from app.core.background import BackgroundTask
from app.queue.records import JobRecord, JobStore
from app.sharding.backend import ShardUnavailable

log = logging.getLogger("keel.queue")

BATCH = 100
CLAIM_SECONDS = 30.0  # a relay that dies mid-batch holds its claim this long
STOP_TIMEOUT = 5.0

# Publish one record; True once the queue confirmed it (and the record says so).
Publish = Callable[[JobRecord], Awaitable[bool]]


class OutboxRelay:
    def __init__(self, store: JobStore, publish: Publish, interval: float) -> None:
        self.store = store
        self.publish = publish
        self.interval = interval
        self._wake = asyncio.Event()
        self.published = 0  # by this relay, since start

    def wake(self) -> None:
        self._wake.set()

    async def run_once(self) -> int:
        """One pass over every shard; stops at the first publish that fails."""
        published = 0
        for shard in self.store.shards:
            while True:
                try:
                    batch = await self.store.claim_unpublished(shard, BATCH, CLAIM_SECONDS)
                except ShardUnavailable:
                    break  # this shard's jobs wait for its return
                if not batch:
                    break
                for index, record in enumerate(batch):
                    if not await self.publish(record):
                        await self._unclaim(batch[index:])
                        return published
                    published += 1
                if len(batch) < BATCH:
                    break
        if published:
            log.info("outbox relay published %d accepted job(s)", published)
        self.published += published
        return published

    async def _unclaim(self, records: list[JobRecord]) -> None:
        """Hand back what this pass claimed but could not publish, for the next pass."""
        for record in records:
            with contextlib.suppress(ShardUnavailable):
                await self.store.hand_to_relay(record.id)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        stop = asyncio.Event()

        async def loop() -> None:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.interval):
                        await self._wake.wait()
                self._wake.clear()
                if stop.is_set():
                    return
                await self.run_once()

        task = BackgroundTask("keel.queue.outbox", loop)
        task.start()
        try:
            yield
        finally:
            stop.set()
            self._wake.set()
            await task.stop(grace=STOP_TIMEOUT)  # a relay pass under way may finish
