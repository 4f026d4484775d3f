"""Jobs: tasks, the queue backends, job records, the outbox relay, the consumer.

    tasks.py         @task, TaskRegistry (app[TASKS]), JobContext, args checks
    submission.py    what a client may submit (pure)
    service.py       JobQueue (app[QUEUE]): accept = record first, then publish
    records.py       job records and idempotency keys on the shards
    outbox.py        the relay that publishes accepted jobs not yet confirmed
    backend.py       the interface of a queue backend, and its contract
    rabbitmq.py      RabbitMQ through aiormq; topology.py: its queues (pure);
                     amqp_link.py: the supervised connection under it
    embedded.py      the durable SQLite queue with leases
    message.py       what travels through a queue; backoff and delay buckets (pure)
    consumer.py      runs deliveries: record, run, record the outcome, settle
    decision.py      what a redelivery means, from the record (pure)
    dead_letters.py  list, requeue (paced) and purge dead jobs
    job_events.py    app[JOB_EVENTS]: status changes as an event hook
    metrics.py       keel_jobs_total, keel_queue_depth, keel_job_duration_seconds, …
    settings.py      [queue]

The plugin that wires them is `app/plugins/queue.py`; the HTTP API `app/api/jobs.py`.
"""

from app.queue.dead_letters import DEAD_LETTERS, DeadLetters
from app.queue.job_events import JOB_EVENTS, JobEvent
from app.queue.service import QUEUE, JobQueue
from app.queue.settings import QueueSettings
from app.queue.tasks import TASKS, Field, JobContext, TaskRegistry, fields, task

__all__ = [
    "DEAD_LETTERS",
    "JOB_EVENTS",
    "QUEUE",
    "TASKS",
    "DeadLetters",
    "Field",
    "JobContext",
    "JobEvent",
    "JobQueue",
    "QueueSettings",
    "TaskRegistry",
    "fields",
    "task",
]
