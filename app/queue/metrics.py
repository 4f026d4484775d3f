"""The queue's Prometheus collectors, on the app's registry (`app[METRICS].registry`).

- `keel_jobs_total{task,status}`: status changes this instance recorded
  (queued when accepted, running, succeeded, failed, dead).
- `keel_job_duration_seconds{task}`: how long attempts ran (failed ones too).
- `keel_queue_depth`: jobs ready in the main queue, as last read from the queue.
- `keel_queue_dead`, `keel_queue_consumers`, `keel_queue_outbox_backlog`,
  `keel_jobs_running`: the rest of the dashboard's numbers.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Gauge

from app.core.loop_metrics import LoopCounter, LoopHistogram
from app.queue.tasks import TaskRegistry

UNREGISTERED = "unregistered"  # the task label of names this instance does not know


class QueueMetrics:
    def __init__(
        self,
        registry: CollectorRegistry,
        tasks: TaskRegistry,
        *,
        depth: Callable[[], float],
        dead: Callable[[], float],
        consumers: Callable[[], float],
        outbox: Callable[[], float],
        running: Callable[[], float],
    ) -> None:
        self.tasks = tasks
        # keel_jobs_total summed over tasks, as plain numbers: the dashboard's rates by status.
        self.by_status: dict[str, int] = {}
        # Updated for every job: plain numbers on the event loop (app/core/loop_metrics.py).
        self.jobs = LoopCounter(
            "keel_jobs",
            "Job status changes recorded by this instance, by task and new status.",
            ("task", "status"),
            registry=registry,
        )
        self.duration = LoopHistogram(
            "keel_job_duration_seconds",
            "How long job attempts ran, by task.",
            ("task",),
            registry=registry,
            buckets=(0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600),
        )
        gauges = (
            ("keel_queue_depth", "Jobs ready in the main queue (as last read).", depth),
            ("keel_queue_dead", "Jobs in the dead-letter queue (as last read).", dead),
            ("keel_queue_consumers", "Consumers on the main queue (as last read).", consumers),
            (
                "keel_queue_outbox_backlog",
                "Accepted jobs waiting for the outbox relay (as last read).",
                outbox,
            ),
            ("keel_jobs_running", "Jobs running in this instance.", running),
        )
        for name, documentation, read in gauges:
            Gauge(name, documentation, registry=registry).set_function(read)

    def label(self, task: str) -> str:
        return task if task in self.tasks else UNREGISTERED

    def changed(self, task: str, status: str) -> None:
        self.jobs.labels(self.label(task), status).inc()
        self.by_status[status] = self.by_status.get(status, 0) + 1

    def ran(self, task: str, seconds: float) -> None:
        self.duration.labels(self.label(task)).observe(seconds)
