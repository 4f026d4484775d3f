"""The consumer: takes deliveries, runs their tasks, records outcomes, then settles.

At most `[worker] concurrency` jobs run at once; up to `prefetch` more
deliveries are held meanwhile, their records being written (a job's
bookkeeping does not take a slot, only its run does). For each delivery the
job's record decides what to do (`app.queue.decision`). The usual case is one
statement: the record is marked running if it says this attempt is to run
(`JobStore.start`, which matches exactly what `decide` runs); otherwise it is
read and `decide` says what to do. A job that runs is run under its task's
timeout, and its outcome is written to the record before the delivery is
settled — ack after a success, the next attempt published with backoff after
a failure, the dead queue after the last one. A crash at any point leaves the
message unsettled, so it is delivered again and the record tells the next
consumer where things stood.

Stopping (`stop_taking`, then `drain`): no new deliveries; running jobs get
until the deadline to finish; the rest are cancelled, their records set back
to queued and their deliveries released — back in the queue, never half-done.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from app.core.background import BackgroundTask
from app.core.json_codec import dumps
from app.queue.backend import Delivery, QueueBackend, QueueUnavailable
from app.queue.decision import Action, decide
from app.queue.message import JobMessage, retry_delay
from app.queue.records import JobRecord, JobStore
from app.queue.settings import QueueSettings
from app.queue.tasks import JobContext, TaskRegistry
from app.sharding.backend import ShardUnavailable

log = logging.getLogger("keel.queue")

MAX_RESULT_BYTES = 256 * 1024
MAX_ERROR_CHARS = 2000
SHARD_PAUSE = 1.0  # seconds a delivery is held back when its record cannot be reached
RETURN_TIMEOUT = 5.0  # seconds to put one cut-off job back at shutdown

Notify = Callable[[JobRecord], Awaitable[None]]
Observe = Callable[[str, float], None]  # (task, seconds) of a finished attempt


class JobFailed(Exception):
    """An attempt failed; the message is what the record's `error` says."""


@dataclass(frozen=True)
class _Outcome:
    result: Any
    error: str | None  # None: succeeded


@dataclass
class Running:
    job_id: str
    task: str
    attempt: int
    started: float  # epoch seconds


def _error_text(exc: BaseException) -> str:
    text = str(exc)
    name = type(exc).__name__
    return (f"{name}: {text}" if text else name)[:MAX_ERROR_CHARS]


class Consumer:
    def __init__(
        self,
        backend: QueueBackend,
        store: JobStore,
        tasks: TaskRegistry,
        settings: QueueSettings,
        *,
        concurrency: int,
        prefetch: int = 0,
        app: web.Application,
        notify: Notify,
        observe: Observe,
    ) -> None:
        self.backend = backend
        self.store = store
        self.tasks = tasks
        self.settings = settings
        self.concurrency = concurrency
        self.app = app
        self._notify = notify
        self._observe = observe
        self._slots = asyncio.Semaphore(concurrency)  # jobs running
        self._held = asyncio.Semaphore(concurrency + prefetch)  # deliveries in hand
        self._handlers: set[asyncio.Task[None]] = set()
        self._pulling = BackgroundTask("keel.queue.consumer", self._pull)
        self.running: dict[str, Running] = {}
        self.stopped_at: float | None = None

    @property
    def taking(self) -> bool:
        return self._pulling.running

    async def start(self) -> None:
        await self.backend.start_consuming()
        self._pulling.start()

    async def stop_taking(self) -> None:
        """No new deliveries from now on (running jobs go on)."""
        if self.stopped_at is None:
            self.stopped_at = time.monotonic()
        await self._pulling.stop()
        await self.backend.stop_consuming()

    async def drain(self, grace: float) -> None:
        """Let running jobs finish until `grace` seconds after `stop_taking`; return the rest."""
        await self.stop_taking()
        assert self.stopped_at is not None
        remaining = max(0.0, self.stopped_at + grace - time.monotonic())
        if self._handlers:
            log.info("waiting up to %.1fs for %d running job(s)", remaining, len(self._handlers))
            await asyncio.wait(set(self._handlers), timeout=remaining)
        cut = set(self._handlers)
        if cut:
            log.warning("returning %d unfinished job(s) to the queue", len(cut))
            for handler in cut:
                handler.cancel()
            await asyncio.wait(cut, timeout=RETURN_TIMEOUT * 2)

    async def _pull(self) -> None:
        while True:
            await self._held.acquire()
            try:
                delivery = await self.backend.receive()
            except QueueUnavailable:
                self._held.release()
                await asyncio.sleep(SHARD_PAUSE)
                continue
            except BaseException:
                self._held.release()
                raise
            handler = asyncio.create_task(
                self._handle(delivery), name=f"keel.queue.job.{delivery.message.id}"
            )
            self._handlers.add(handler)
            handler.add_done_callback(self._finished)

    def _finished(self, handler: asyncio.Task[None]) -> None:
        self._handlers.discard(handler)
        self._held.release()
        if not handler.cancelled() and (exc := handler.exception()) is not None:
            log.error("job handler failed", exc_info=exc)

    async def _handle(self, delivery: Delivery) -> None:
        message = delivery.message
        try:
            await self._process(delivery)
        except asyncio.CancelledError:
            await self._return(delivery)
            raise
        except ShardUnavailable as exc:
            # The record cannot be read or written: nothing may be settled. Hold the
            # delivery back a moment so a down shard does not spin it, then return it.
            log.warning("job %s: %s; it goes back to the queue", message.id, exc)
            await asyncio.sleep(SHARD_PAUSE)
            await delivery.release()
        except QueueUnavailable as exc:
            log.warning("job %s: %s; it will be delivered again", message.id, exc)

    async def _return(self, delivery: Delivery) -> None:
        """Shutdown cut this job off: record it queued again, then give the message back
        (in this order: once released, another worker may already be running it)."""
        message = delivery.message
        try:
            async with asyncio.timeout(RETURN_TIMEOUT):
                record = await self.store.mark_returned(message.id, message.attempt)
                if record is not None:
                    await self._notify(record)
        except (ShardUnavailable, TimeoutError) as exc:
            log.warning("job %s: could not mark it queued again: %s", message.id, exc)
        await delivery.release()

    async def _process(self, delivery: Delivery) -> None:
        message = delivery.message
        if delivery.redeliveries < self.settings.delivery_limit:
            outcome = await self._start_and_run(message)
            if outcome is not None:
                await self._settle(delivery, outcome)
                return
        record = await self.store.get(message.id)
        decision = decide(record, message, delivery.redeliveries, self.settings.delivery_limit)
        if decision.action is Action.RUN:  # the record changed since `start` looked
            async with self._slots:
                running = await self.store.mark_running(message.id, message.attempt)
                if running is None:
                    await delivery.ack()  # deleted meanwhile
                    return
                outcome = await self._run(message, running)
            await self._settle(delivery, outcome)
            return
        if decision.action in (Action.DROP, Action.SKIP):
            log.debug("job %s attempt %d: %s", message.id, message.attempt, decision.why)
            await delivery.ack()
        elif decision.action is Action.RETRY:
            await self._retry(delivery, message)
        elif decision.action is Action.BURY:
            await delivery.bury(message, decision.why)
        elif decision.action is Action.POISON:
            log.error("job %s is poison: %s; dead-lettering it", message.id, decision.why)
            poisoned = await self.store.mark_poisoned(message.id, message.attempt, decision.why)
            if poisoned is not None:
                await self._notify(poisoned)
            await delivery.bury(message, decision.why)

    async def _retry(self, delivery: Delivery, message: JobMessage) -> None:
        delay = retry_delay(message.attempt, self.settings.backoff, self.settings.max_backoff)
        await delivery.retry(message.next_attempt(), delay)

    async def _start_and_run(self, message: JobMessage) -> _Outcome | None:
        """Mark the job running and run it, if its record says so (None: it does not)."""
        async with self._slots:  # taken first: "running" is never shown while it waits
            started = await self.store.start(message.id, message.attempt)
            if started is None:
                return None
            return await self._run(message, started)

    async def _run(self, message: JobMessage, record: JobRecord) -> _Outcome:
        """Run the attempt that `record` (just marked running) says is under way."""
        await self._notify(record)
        self.running[message.id] = Running(message.id, message.task, message.attempt, time.time())
        started = time.perf_counter()
        try:
            return _Outcome(await self._call(message), None)
        except JobFailed as exc:
            return _Outcome(None, str(exc))
        finally:
            self.running.pop(message.id, None)
            self._observe(message.task, time.perf_counter() - started)

    async def _settle(self, delivery: Delivery, outcome: _Outcome) -> None:
        """Record the outcome, then settle the delivery (in this order: see the module)."""
        message = delivery.message
        if outcome.error is None:
            done = await self.store.mark_succeeded(message.id, message.attempt, outcome.result)
            if done is None:
                log.info("job %s: attempt %d is stale", message.id, message.attempt)
            else:
                await self._notify(done)
            await delivery.ack()
            return
        last = message.attempt >= message.max_attempts
        failed = await self.store.mark_failed(message.id, message.attempt, outcome.error, dead=last)
        if failed is not None:
            await self._notify(failed)
        if last:
            await delivery.bury(message, outcome.error)
        else:
            await self._retry(delivery, message)

    async def _call(self, message: JobMessage) -> Any:
        """Run the task; `JobFailed` with the error text on any failure of the attempt."""
        task = self.tasks.get(message.task)
        if task is None:
            raise JobFailed(f'task "{message.task}" is not registered on this instance')
        timeout = task.timeout or self.settings.task_timeout
        context = JobContext(
            message.id, message.task, message.attempt, message.max_attempts, self.app
        )
        deadline = asyncio.timeout(timeout)
        try:
            async with deadline:
                result = await task.run(dict(message.args), context)
        except TimeoutError as exc:
            if deadline.expired():
                raise JobFailed(f"timed out after {timeout:g}s") from None
            raise JobFailed(_error_text(exc)) from exc
        except Exception as exc:
            log.warning(
                "job %s (%s) attempt %d/%d failed: %s",
                message.id,
                message.task,
                message.attempt,
                message.max_attempts,
                _error_text(exc),
                # The traceback once, when the job dies of it; retries log a line each.
                exc_info=exc if message.attempt >= message.max_attempts else None,
            )
            raise JobFailed(_error_text(exc)) from exc
        try:
            size = len(dumps(result))
        except TypeError as exc:
            raise JobFailed(f"the result is not JSON-serializable: {exc}") from None
        if size > MAX_RESULT_BYTES:
            raise JobFailed(f"the result is {size} bytes; at most {MAX_RESULT_BYTES} are kept")
        return result
