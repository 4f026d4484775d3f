"""`[queue]`: the queue plugin's section (the broker itself is `[amqp]`, in `app.config`)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from app.core.config_schema import check, not_negative, positive

# A queue name becomes RabbitMQ queue names and SQLite values: keep it plain.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,100}")


def _queue_name(value: str) -> str | None:
    if _NAME.fullmatch(value):
        return None
    return f'expected 1..101 characters of [A-Za-z0-9._-] (not starting with . - _), got "{value}"'


def _attempts(value: int) -> str | None:
    return None if 1 <= value <= 100 else f"expected an integer 1..100, got {value}"


@dataclass(frozen=True)
class QueueSettings:
    """`[queue]`. Times are in seconds.

    - `name`: prefix of the queues (`<name>.jobs`, `<name>.dead`, `<name>.delay.<ms>`).
    - `consume`: does `run.py serve` run consumers too (`run.py worker` always does).
    - `prefetch`: deliveries one consumer holds beyond the jobs it runs (RabbitMQ's
      prefetch is `[worker] concurrency` + this; the embedded queue claims up to this
      many at once); they wait in hand, and outcomes are recorded outside the slots, so
      it is also how deep the consumer's pipeline is.
    - `max_attempts`: attempts of a job before it is dead (a job may ask for fewer or more).
    - `backoff`, `max_backoff`: retry n (n = 0, 1, …) waits `backoff` * 2^n, at most `max_backoff`.
    - `task_timeout`: the timeout of a task that declares none.
    - `delivery_limit`: deliveries of one attempt that end with no outcome (the worker
      died or was killed) before the job is dead-lettered as poison.
    - `lease`, `poll_interval`: the embedded queue only — how long a claimed job stays
      reserved without its worker renewing it, and how often to look for jobs that
      another process queued.
    - `relay_interval`: how often the outbox relay looks for accepted jobs not yet published.
    - `requeue_rate`: dead jobs requeued per second at most.
    - `retention`: finished (succeeded or dead) job records are deleted after this long
      (0 = kept forever).
    """

    name: str = field(default="keel", metadata=check(_queue_name))
    consume: bool = True
    prefetch: int = field(default=64, metadata=check(positive))
    max_attempts: int = field(default=5, metadata=check(_attempts))
    backoff: float = field(default=1.0, metadata=check(not_negative))
    max_backoff: float = field(default=3600.0, metadata=check(not_negative))
    task_timeout: float = field(default=300.0, metadata=check(positive))
    delivery_limit: int = field(default=5, metadata=check(positive))
    lease: float = field(default=30.0, metadata=check(positive))
    poll_interval: float = field(default=0.5, metadata=check(positive))
    relay_interval: float = field(default=2.0, metadata=check(positive))
    requeue_rate: float = field(default=50.0, metadata=check(positive))
    retention: float = field(default=7 * 86400.0, metadata=check(not_negative))
