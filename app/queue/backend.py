"""The interface both queue backends implement: RabbitMQ and the embedded SQLite queue.

A backend moves `JobMessage`s; it knows nothing of job records. Its contract,
checked by one test suite run against both (tests/queue/test_backend_contract.py):

- `publish(message, delay)` returns only once the message is durable (a broker
  confirm; a committed SQLite write); otherwise it raises `QueueUnavailable`.
  The message becomes deliverable `delay` seconds later (never earlier).
- `receive()` hands out one delivery at a time while consuming. A delivery is
  settled exactly once: `ack()` (done), `retry(message, delay)` (publish the
  next attempt, then ack), `bury(message, reason)` (publish to the dead queue,
  then ack) or `release()` (back to the queue, unacked: shutdown). A delivery
  never settled — its worker died — is offered again (broker redelivery, or
  lease expiry), with `redeliveries` counting such returns.
- Dead messages stay in the dead queue until `requeue_dead` moves them back
  (published to the main queue, confirmed, then removed from the dead queue)
  or `purge_dead` drops them (some by job id, or all).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import ClassVar

from app.errors import KeelError
from app.queue.message import JobMessage


class QueueUnavailable(KeelError):
    """The queue cannot take or settle a message now (broker down, connection lost)."""


@dataclass(frozen=True)
class QueueStats:
    depth: int  # messages ready in the main queue
    dead: int  # messages in the dead queue
    consumers: int  # consumers the broker counts on the main queue (all instances)


@dataclass(frozen=True)
class DeadLetter:
    message: JobMessage
    reason: str


class Delivery(ABC):
    """One delivery of a message to this consumer, to settle exactly once."""

    message: JobMessage
    # Earlier deliveries of this same message that ended with no outcome.
    redeliveries: int

    @abstractmethod
    async def ack(self) -> None:
        """Done: remove the message. `QueueUnavailable` if it can no longer be acked
        (it will be delivered again)."""

    @abstractmethod
    async def retry(self, message: JobMessage, delay: float) -> None:
        """Publish `message` (the next attempt) after `delay`, then remove this one."""

    @abstractmethod
    async def bury(self, message: JobMessage, reason: str) -> None:
        """Publish `message` to the dead queue with `reason`, then remove this one."""

    @abstractmethod
    async def release(self) -> None:
        """Give the message back unsettled, to be delivered again (never raises)."""


# A requeue callback: True once the message is safely back in the main queue
# (so the backend may remove it from the dead queue), False to leave it there.
Requeue = Callable[[JobMessage], Awaitable[bool]]


class QueueBackend(ABC):
    kind: ClassVar[str]

    @abstractmethod
    async def open(self) -> None:
        """Start; a broker that cannot be reached now is retried in the background."""

    @abstractmethod
    async def close(self) -> None: ...

    @property
    @abstractmethod
    def connected(self) -> bool: ...

    @property
    def last_error(self) -> str:
        return ""

    def on_connected(self, callback: Callable[[], None]) -> None:  # noqa: B027 (optional hook)
        """Call `callback` every time the backend (re)connects (the outbox relay wakes)."""

    @abstractmethod
    async def publish(self, message: JobMessage, delay: float = 0.0) -> None:
        """Durable when it returns; `QueueUnavailable` otherwise."""

    @abstractmethod
    async def start_consuming(self) -> None: ...

    @abstractmethod
    async def receive(self) -> Delivery:
        """The next delivery; waits. Only between start_consuming and stop_consuming."""

    @abstractmethod
    async def stop_consuming(self) -> None:
        """No new deliveries; deliveries received but not settled stay valid."""

    @property
    def consuming(self) -> bool:
        """Is this instance's consumer in place (for readiness)?"""
        return False

    @abstractmethod
    async def stats(self) -> QueueStats: ...

    @abstractmethod
    async def dead_letters(self, limit: int) -> list[DeadLetter]:
        """The newest `limit` dead messages, newest first, left in place."""

    @abstractmethod
    async def requeue_dead(self, job_ids: frozenset[str] | None, requeue: Requeue) -> int:
        """Offer each dead message (of `job_ids`, or all) to `requeue`; remove those it
        took. Returns how many were removed."""

    @abstractmethod
    async def purge_dead(self, job_ids: frozenset[str] | None = None) -> int:
        """Drop the dead messages of `job_ids` (every one when None); return how many."""
