"""The consumer: takes deliveries, runs their tasks, records outcomes, then settles.

At most `[worker] concurrency` jobs run at once; up to `prefetch` more
deliveries are held meanwhile. Once a slot is free, the job's record is read
and decides what to do with the delivery (`app.queue.decision`); the slot is
freed before the outcome is written. A job that runs is run under its
task's timeout, and its outcome is written to the record before the delivery
is settled — ack after a success, the next attempt published with backoff
after a failure, the dead queue after the last one. The outcome is written
only if the record still says this attempt is the one to run (`JobStore.finish`);
an attempt that runs longer than `SHOW_RUNNING_AFTER` is recorded "running"
first, a quicker one is recorded once, with its outcome. A crash at any point
leaves the message unsettled, so it is delivered again and the record tells
the next consumer where things stood.

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
from app.core.shared_timeout import SharedTimeout
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
# An attempt still running after this many seconds is recorded "running"; one that
# ends sooner is recorded once, with its outcome.
SHOW_RUNNING_AFTER = 0.1

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
    shown: asyncio.Task[None] | None = None  # recording it "running"


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
        self._showing = BackgroundTask("keel.queue.running", self._show_running)
        self.running: dict[str, Running] = {}
        self._timeouts: dict[float, SharedTimeout] = {}  # by seconds: the task timeouts
        self.stopped_at: float | None = None

    @property
    def taking(self) -> bool:
        return self._pulling.running

    async def start(self) -> None:
        await self.backend.start_consuming()
        self._pulling.start()
        self._showing.start()

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
        await self._showing.stop()

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
        # The record is read once a slot is free: a copy that waited is judged on what
        # the record says now, not on what it said when the copy arrived.
        async with self._slots:
            record = await self.store.get(message.id)
            decision = decide(record, message, delivery.redeliveries, self.settings.delivery_limit)
            if decision.action is Action.RUN:
                outcome = await self._run(message)
        if decision.action is Action.RUN:
            await self._settle(delivery, outcome)
        elif decision.action in (Action.DROP, Action.SKIP):
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

    async def _run(self, message: JobMessage) -> _Outcome:
        """Run the attempt; `_show_running` records it running if it takes a while."""
        running = Running(message.id, message.task, message.attempt, time.time())
        self.running[message.id] = running
        started = time.perf_counter()
        try:
            return _Outcome(await self._call(message), None)
        except JobFailed as exc:
            return _Outcome(None, str(exc))
        finally:
            if self.running.get(message.id) is running:
                del self.running[message.id]
            self._observe(message.task, time.perf_counter() - started)
            if running.shown is not None:
                # Its "running" goes before the outcome (or the return to the queue).
                await asyncio.shield(running.shown)

    async def _show_running(self) -> None:
        """Record "running" for the attempts that have run for `SHOW_RUNNING_AFTER`.

        A quick job is recorded once, with its outcome: a client sees it queued, then
        succeeded (never a status ahead of what happened), and the consumer writes
        one record change per job instead of two."""
        while True:
            await asyncio.sleep(SHOW_RUNNING_AFTER / 2)
            due = time.time() - SHOW_RUNNING_AFTER
            for running in self.running.values():
                if running.shown is None and running.started <= due:
                    running.shown = asyncio.create_task(
                        self._mark_running(running), name=f"keel.queue.running.{running.job_id}"
                    )

    async def _mark_running(self, running: Running) -> None:
        try:
            record = await self.store.start(running.job_id, running.attempt)
        except ShardUnavailable as exc:  # the outcome is still recorded when it can be
            log.warning("job %s: could not record it running: %s", running.job_id, exc)
            return
        if record is not None:
            await self._notify(record)

    async def _settle(self, delivery: Delivery, outcome: _Outcome) -> None:
        """Record the outcome, then settle the delivery (in this order: see the module)."""
        message = delivery.message
        if outcome.error is None:
            done = await self.store.finish(
                message.id, message.attempt, "succeeded", result=outcome.result
            )
            if done is None:
                log.info("job %s: attempt %d is stale", message.id, message.attempt)
            else:
                await self._notify(done)
            await delivery.ack()
            return
        last = message.attempt >= message.max_attempts
        failed = await self.store.finish(
            message.id, message.attempt, "dead" if last else "failed", error=outcome.error
        )
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
        # One timer per distinct timeout, shared by the attempts under it (a timer
        # made and cancelled per job was a few percent of the event loop).
        shared = self._timeouts.get(timeout)
        if shared is None:
            shared = self._timeouts[timeout] = SharedTimeout(timeout)
        started = time.monotonic()
        try:
            result = await shared.run(task.run(dict(message.args), context))
        except TimeoutError as exc:
            # Ours fires only at the deadline; a TimeoutError of the task's own before
            # then is its error.
            if time.monotonic() - started >= timeout:
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
