"""`JobQueue` — `app[QUEUE]`: accept, read and publish jobs; what handlers and plugins use.

Accepting a job (`submit`): an `Idempotency-Key` is bound to a job id first
(on the key's shard); then the job's record is written, queued and
unpublished (on the id's shard) — from this moment the job is *accepted* and
will run. Then, still in the request, the message is published through the
`amqp` guard and the broker's confirm awaited; the record is then marked
published with others, after the response (`app.queue.published`). If
publishing fails or the guard refuses (broker down), the request still
succeeds: the record is in the outbox and the relay publishes it when it can.

Plugins submit jobs the same way, with the same checks:

    record = await app[QUEUE].enqueue("reports.build", {"day": "2026-01-31"})
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from app.config import AmqpSettings
from app.core.events import EventHook
from app.core.guard import Guard, Refused, call_guarded
from app.queue.backend import QueueBackend, QueueUnavailable
from app.queue.job_events import JobEvent
from app.queue.metrics import QueueMetrics
from app.queue.published import PublishedMarks
from app.queue.records import JobRecord, JobStore, fingerprint
from app.queue.settings import QueueSettings
from app.queue.submission import JobBody, JobRequest, Rejected
from app.queue.tasks import TaskRegistry
from app.sharding.backend import ShardUnavailable

log = logging.getLogger("keel.queue")


@dataclass(frozen=True)
class Submission:
    job: JobRecord
    created: bool  # False: the Idempotency-Key named a job accepted before


@dataclass
class QueueStatus:
    """The queue's numbers as last read (refreshed in the background)."""

    depth: int = 0
    dead: int = 0
    consumers: int = 0
    outbox_backlog: int = 0
    error: str = ""
    read_at: float | None = None
    published_now: int = 0  # published by the request that accepted them
    handed_to_relay: int = 0  # left to the outbox relay


class JobQueue:
    def __init__(
        self,
        store: JobStore,
        tasks: TaskRegistry,
        backend: QueueBackend,
        settings: QueueSettings,
        amqp: AmqpSettings,
        *,
        guard: Callable[[], Guard],
        events: EventHook[JobEvent],
        metrics: QueueMetrics,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.tasks = tasks
        # Built once: it reads the registered tasks as it checks, so it never goes stale.
        self.body = JobBody(tasks)
        self.backend = backend
        self.settings = settings
        self.guard = guard
        self.events = events
        self.metrics = metrics
        self.clock = clock
        self.status = QueueStatus()
        self.marks = PublishedMarks(store)
        # The request that accepted a job publishes it; relays keep off it this long.
        self.publish_window = amqp.publish_timeout + 5.0

    async def enqueue(
        self,
        task: str,
        args: dict[str, Any] | None = None,
        *,
        delay: float = 0.0,
        max_attempts: int | None = None,
        idempotency_key: str | None = None,
    ) -> JobRecord:
        """Submit a job from code; `Rejected` when it is not valid (as a 422 would say)."""
        body: dict[str, Any] = {"task": task, "args": args or {}, "delay": delay}
        if max_attempts is not None:
            body["max_attempts"] = max_attempts
        request = self.body.request(body, self.settings.max_attempts)
        return (await self.submit(request, idempotency_key)).job

    async def submit(self, request: JobRequest, idempotency_key: str | None = None) -> Submission:
        """Accept a validated job. `ShardUnavailable` when its record cannot be written
        (then it was not accepted); `Rejected` when the key was used for another request."""
        now = self.clock()
        job_id = self.store.new_id()
        if idempotency_key is not None:
            digest = fingerprint(request.task, request.args, request.delay, request.max_attempts)
            claim = await self.store.claim_key(idempotency_key, job_id, digest)
            if claim.fingerprint != digest:
                raise Rejected(
                    [
                        {
                            "field": "Idempotency-Key",
                            "message": "already used for a different request"
                            " within the last 24 hours",
                        }
                    ]
                )
            job_id = claim.job_id
        record, created = await self.store.insert(
            job_id,
            request.task,
            request.args,
            max_attempts=request.max_attempts,
            run_at=now + request.delay,
            relay_after=now + self.publish_window,
            idempotency_key=idempotency_key,
        )
        if created:
            await self.notify(record)
            # The job is accepted: nothing from here on may fail the request.
            if await self.publish(record):
                self.status.published_now += 1
            else:
                self.status.handed_to_relay += 1
                try:
                    await self.store.hand_to_relay(record.id)
                except ShardUnavailable as exc:
                    log.info("job %s waits for the relay's next pass: %s", record.id, exc)
        return Submission(record, created)

    async def get(self, job_id: str) -> JobRecord | None:
        return await self.store.get(job_id)

    async def publish(self, record: JobRecord) -> bool:
        """Publish the job's first attempt through the `amqp` guard and mark the record
        published; False when the queue did not confirm it (it stays in the outbox)."""
        delay = max(0.0, record.run_at - self.clock())
        message = record.message(1)
        try:
            await call_guarded(
                self.guard(),
                lambda: self.backend.publish(message, delay),
                (QueueUnavailable,),
            )
        except Refused:
            return False
        except QueueUnavailable as exc:
            log.debug("job %s not published now: %s", record.id, exc)
            return False
        # Marked with others, unawaited: the job is accepted either way (published.py).
        self.marks.add(record.id)
        return True

    async def notify(self, record: JobRecord) -> None:
        """A status change was recorded: count it and tell the subscribers."""
        self.metrics.changed(record.task, record.status)
        await self.events.emit(JobEvent(record.public()))

    async def refresh(self) -> None:
        """Read the queue's numbers (background, for state(), readiness and metrics)."""
        status = self.status
        try:
            stats = await self.backend.stats()
        except QueueUnavailable as exc:
            status.error = str(exc)
        else:
            status.depth, status.dead, status.consumers = stats.depth, stats.dead, stats.consumers
            status.error = ""
        status.outbox_backlog = await self.store.outbox_backlog()
        status.read_at = self.clock()


QUEUE = web.AppKey("keel.queue", JobQueue)
