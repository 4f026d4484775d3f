"""Operating the dead-letter queue: list, requeue (one, some or all) and purge.

Requeueing is safe against a crash at any point: the job's record is set
back to queued (attempts 0) and into the outbox first, then its first
attempt is published with a confirm, and only then is the message removed
from the dead queue. A crash before the publish leaves the record for the
outbox relay; a crash after it, before the removal, leaves a stale dead
message — requeueing it again is refused for a job that has since
succeeded. Requeues are paced at `[queue] requeue_rate` per second, so
replaying a large dead queue does not flood the workers, and one operation
runs at a time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import web

from app.queue.message import JobMessage
from app.queue.service import JobQueue

log = logging.getLogger("keel.queue")


class Pacer:
    """At most `rate` calls of `wait()` return per second (evenly spaced)."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = 1.0 / rate
        self.clock = clock
        self._next = 0.0

    def delay(self) -> float:
        """Seconds the next call must wait; books its slot."""
        now = self.clock()
        start = max(now, self._next)
        self._next = start + self.interval
        return start - now

    async def wait(self) -> None:
        if (seconds := self.delay()) > 0:
            await asyncio.sleep(seconds)


class DeadLetters:
    def __init__(self, queue: JobQueue) -> None:
        self.queue = queue
        self._lock = asyncio.Lock()

    async def list(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest `limit` dead jobs, newest first: id, task, args, attempts, reason."""
        letters = await self.queue.backend.dead_letters(limit)
        return [
            {
                "id": letter.message.id,
                "task": letter.message.task,
                "args": letter.message.args,
                "attempt": letter.message.attempt,
                "reason": letter.reason,
            }
            for letter in letters
        ]

    async def count(self) -> int:
        """How many dead jobs there are now (read from the queue, not the last stats)."""
        return (await self.queue.backend.stats()).dead

    async def requeue(self, job_ids: Iterable[str] | None = None) -> int:
        """Move dead jobs (these ids, or all) back to the main queue; how many moved."""
        wanted = frozenset(job_ids) if job_ids is not None else None
        async with self._lock:
            pacer = Pacer(self.queue.settings.requeue_rate)
            moved = await self.queue.backend.requeue_dead(
                wanted, lambda message: self._requeue_one(message, pacer)
            )
        log.info("requeued %d dead job(s)", moved)
        return moved

    async def _requeue_one(self, message: JobMessage, pacer: Pacer) -> bool:
        store = self.queue.store
        record = await store.get(message.id)
        if record is not None and record.status == "succeeded":
            return True  # a stale dead copy of a job that has run since: just drop it
        await pacer.wait()
        relay_after = self.queue.clock() + self.queue.publish_window
        if record is None:  # its record expired: write it again from the message
            record, _ = await store.insert(
                message.id,
                message.task,
                message.args,
                max_attempts=message.max_attempts,
                run_at=self.queue.clock(),
                relay_after=relay_after,
            )
        requeued = await store.mark_requeued(message.id, relay_after)
        if requeued is None:
            return False
        await self.queue.notify(requeued)
        # Only a confirmed publish lets the dead message go; otherwise the record
        # is in the outbox and the relay publishes it.
        return await self.queue.publish(requeued)

    async def purge(self, job_ids: Iterable[str] | None = None) -> int:
        """Drop these dead jobs (all when None) from the dead queue; their records stay dead."""
        wanted = frozenset(job_ids) if job_ids is not None else None
        async with self._lock:
            purged = await self.queue.backend.purge_dead(wanted)
        log.info("purged %d dead job(s)", purged)
        return purged


# The operator API (the admin dashboard's): published by the queue plugin.
DEAD_LETTERS = web.AppKey("keel.queue.dead_letters", DeadLetters)
