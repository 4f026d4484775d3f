"""The `queue` plugin: jobs on RabbitMQ or on an embedded durable queue; none is ever lost.

Publishes `app[QUEUE]` (`JobQueue`: submit and read jobs), `app[TASKS]` (the
task registry other plugins add their tasks to) and `app[JOB_EVENTS]` (job
status changes, see `app.queue.job_events`). With `[amqp] url` set the queue
is RabbitMQ (`app.queue.rabbitmq`, topology in `app.queue.topology`), reached
through the `amqp` breaker when the breakers plugin is enabled; otherwise a
SQLite file under `server.data_dir` (`app.queue.embedded`). Job records live
on the shards (`app.queue.records`), so every instance sees every job.

In the `serve` role it adds `POST /api/jobs` and `GET /api/jobs/{id}` and, unless
`[queue] consume = false`, consumes too; `run.py worker` only consumes. Both run
the outbox relay. Shutdown: consuming stops at the drain step (the listener has
closed); running jobs get `server.shutdown_timeout` to finish; the rest go back
to the queue unacked.

Operator API (the admin dashboard's, also as `app[DEAD_LETTERS]`): `dead_jobs()`,
`requeue_dead(ids)`, `purge_dead(ids)`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from typing import Any

from aiohttp import web

from app.api import jobs as jobs_api
from app.api import jobs_openapi
from app.breakers import BREAKERS
from app.config import Config
from app.core.events import EventHook
from app.core.guard import Guard, MinimalGuard
from app.core.lifecycle import LIFECYCLE
from app.core.periodic import periodic
from app.errors import StartupError
from app.metrics import registry_of
from app.plugins import BasePlugin, Readiness, SettingsOf
from app.queue.backend import QueueBackend, QueueUnavailable
from app.queue.consumer import Consumer
from app.queue.dead_letters import DEAD_LETTERS, DeadLetters
from app.queue.embedded import EmbeddedQueue
from app.queue.job_events import JOB_EVENTS, JobEvent
from app.queue.metrics import QueueMetrics
from app.queue.outbox import OutboxRelay
from app.queue.rabbitmq import RabbitQueue
from app.queue.records import JobStore
from app.queue.service import QUEUE, JobQueue
from app.queue.settings import QueueSettings
from app.queue.tasks import TASKS, TaskRegistry
from app.queue.topology import Topology
from app.sharding import SHARDS

log = logging.getLogger("keel.queue")

STATS_INTERVAL = 2.0  # seconds between reads of depth, dead, consumers and outbox backlog
RETENTION_INTERVAL = 600.0  # seconds between deletions of expired records and keys
EMBEDDED_FILE = "queue.db"


class QueuePlugin(BasePlugin):
    name = "queue"
    requires = ("sharding",)
    optional = ("metrics", "breakers")
    settings = SettingsOf(QueueSettings)

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.consumer: Consumer | None = None

    def setup(self, app: web.Application) -> None:
        lifecycle = app[LIFECYCLE]
        registry = registry_of(app)
        self.tasks = app[TASKS] = TaskRegistry()
        events: EventHook[JobEvent] = EventHook("jobs")
        app[JOB_EVENTS] = events
        self.backend = self._backend(lifecycle.instance.id)
        self.guard = self._guard(app)
        self.metrics = QueueMetrics(
            registry,
            self.tasks,
            depth=lambda: self.queue.status.depth,
            dead=lambda: self.queue.status.dead,
            consumers=lambda: self.queue.status.consumers,
            outbox=lambda: self.queue.status.outbox_backlog,
            running=lambda: len(self.consumer.running) if self.consumer else 0,
        )
        store = JobStore(app[SHARDS])
        self.queue = app[QUEUE] = JobQueue(
            store,
            self.tasks,
            self.backend,
            self.settings,
            self.config.amqp,
            guard=lambda: self.guard,
            events=events,
            metrics=self.metrics,
        )
        self.dead_letters = app[DEAD_LETTERS] = DeadLetters(self.queue)
        self.relay = OutboxRelay(store, self.queue.publish, self.settings.relay_interval)
        # A connection made again is the broker's probe: its breaker lets publishes
        # through now, then the relay sends what waited in the outbox.
        self.backend.on_connected(lambda: self.guard.probe_succeeded())
        self.backend.on_connected(self.relay.wake)
        if lifecycle.role == "worker" or self.settings.consume:
            self.consumer = Consumer(
                self.backend,
                store,
                self.tasks,
                self.settings,
                concurrency=self.config.worker.concurrency,
                prefetch=self.settings.prefetch,
                app=app,
                notify=self.queue.notify,
                observe=self.metrics.ran,
            )
        if lifecycle.role == "serve":
            jobs_api.add_routes(app)

    def _backend(self, owner: str) -> QueueBackend:
        amqp = self.config.amqp
        if amqp.url:
            return RabbitQueue(
                amqp,
                Topology(self.settings.name),
                # Unacked at most: the jobs running, and `prefetch` more held meanwhile.
                prefetch=self.config.worker.concurrency + self.settings.prefetch,
                # The broker's limit is a backstop behind ours (decision.py), which
                # records the job as dead first; either way it is dead-lettered.
                delivery_limit=self.settings.delivery_limit + 2,
                client_name=f"keel {owner}",
            )
        return EmbeddedQueue(
            self.config.server.data_path / EMBEDDED_FILE,
            self.settings.name,
            owner=owner,
            lease=self.settings.lease,
            poll_interval=self.settings.poll_interval,
            prefetch=self.settings.prefetch,
        )

    def _guard(self, app: web.Application) -> Guard:
        if not self.config.amqp.url:
            # A local file, not a dependency that fails as a whole: nothing to break.
            return MinimalGuard("embedded-queue", failures_to_open=1_000_000)
        breakers = app.get(BREAKERS)
        if breakers is not None:
            return breakers.get("amqp")
        return MinimalGuard("amqp", open_seconds=1.0)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: web.Application) -> AsyncIterator[None]:
        try:
            await self.backend.open()
        except QueueUnavailable as exc:
            raise StartupError([f"queue: {exc}"]) from exc
        try:
            async with contextlib.AsyncExitStack() as stack:
                await stack.enter_async_context(self.relay.running())
                await stack.enter_async_context(
                    periodic("keel.queue.stats", lambda: STATS_INTERVAL, self.queue.refresh)
                )
                if self.settings.retention > 0:
                    await stack.enter_async_context(
                        periodic("keel.queue.retention", lambda: RETENTION_INTERVAL, self._expire)
                    )
                if self.consumer is not None:
                    await self.consumer.start()
                await self.queue.refresh()
                try:
                    yield
                finally:
                    if self.consumer is not None:
                        await self.consumer.drain(self.config.server.shutdown_timeout)
        finally:
            await self.queue.marks.close()  # before the shards close (they are set up first)
            await self.backend.close()

    async def drain(self, app: web.Application) -> None:
        """Stop taking jobs; the running ones finish (or go back) at teardown."""
        if self.consumer is not None:
            await self.consumer.stop_taking()

    async def _expire(self) -> None:
        deleted = await self.queue.store.delete_expired(self.settings.retention)
        if deleted:
            log.info("deleted %d finished job record(s) older than the retention", deleted)

    # --- operator API (the admin dashboard calls these) ---------------------------------

    async def dead_jobs(self, limit: int = 100) -> list[dict[str, Any]]:
        """The newest `limit` dead jobs, newest first, with why they died."""
        return await self.dead_letters.list(limit)

    async def requeue_dead(self, job_ids: Iterable[str] | None = None) -> int:
        """Requeue these dead jobs (all when None), paced; returns how many moved."""
        return await self.dead_letters.requeue(job_ids)

    async def purge_dead(self, job_ids: Iterable[str] | None = None) -> int:
        """Drop these dead jobs (all when None) from the dead queue; returns how many."""
        return await self.dead_letters.purge(job_ids)

    # --- what the dashboard and /readyz show ------------------------------------------

    async def readiness(self) -> Readiness:
        status = self.queue.status
        backend = self.backend
        if not backend.connected:
            return Readiness(
                "degraded",
                f"{_describe(backend)} unreachable ({backend.last_error}); accepted jobs wait"
                f" in the outbox ({status.outbox_backlog})",
            )
        if self.consumer is not None and self.consumer.taking and not backend.consuming:
            return Readiness("degraded", f"no consumer on {_main_queue(backend)}")
        return Readiness(
            "ok",
            f"{_describe(backend)} {_main_queue(backend)}: {status.consumers} consumer(s),"
            f" depth {status.depth}, dead {status.dead}",
        )

    def state(self) -> dict[str, Any]:
        status = self.queue.status
        backend = self.backend
        running = self.consumer.running if self.consumer else {}
        return {
            "backend": backend.kind,
            "queue": _main_queue(backend),
            "queue_type": getattr(backend, "queue_type", None) or "sqlite",
            "connected": backend.connected,
            "error": backend.last_error or status.error,
            "breaker": self.guard.state,
            "consuming": backend.consuming,
            "concurrency": self.consumer.concurrency if self.consumer else 0,
            "depth": status.depth,
            "dead": status.dead,
            "consumers": status.consumers,
            "outbox_backlog": status.outbox_backlog,
            "running": len(running),
            "jobs_by_status": dict(self.metrics.by_status),
            "running_jobs": [vars(job) for job in list(running.values())[:20]],
            "published_at_once": status.published_now,
            "left_to_relay": status.handed_to_relay,
            "relayed": self.relay.published,
            "tasks": self.tasks.names(),
        }

    def openapi_paths(self) -> dict[str, Any]:
        return jobs_openapi.paths(self.tasks)

    def openapi_schemas(self) -> dict[str, Any]:
        return {"Job": jobs_openapi.JOB_SCHEMA}


def _describe(backend: QueueBackend) -> str:
    return "RabbitMQ" if isinstance(backend, RabbitQueue) else "embedded queue"


def _main_queue(backend: QueueBackend) -> str:
    if isinstance(backend, RabbitQueue):
        return backend.topology.main
    assert isinstance(backend, EmbeddedQueue)
    return backend.main_queue
