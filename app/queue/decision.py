"""What a consumer does with a delivery, given the job's record. Pure code.

Delivery is at least once: a message can arrive again after its worker died,
after its ack was lost with a connection, or as a duplicate published by a
relay that crashed between the broker's confirm and marking the job
published. The record decides, so that redeliveries cost little and never
lose a step:

- no record (deleted after `retention`): drop (ack).
- the record is at a later attempt: skip — a stale copy of an earlier attempt.
- succeeded: skip, done. Dead: skip, unless dead at this very attempt — then
  bury again, since the dead-letter publish may not have happened.
- failed at this very attempt: follow up without running again — publish the
  retry (or bury after the last attempt); the crash may have come before it.
- otherwise, delivered `delivery_limit` times already without an outcome:
  poison — dead without running.
- otherwise (queued, failed at an earlier attempt, running but its worker
  died): run.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from app.queue.message import JobMessage
from app.queue.records import JobRecord


class Action(enum.Enum):
    RUN = "run"
    DROP = "drop"
    SKIP = "skip"
    RETRY = "retry"
    BURY = "bury"
    POISON = "poison"


@dataclass(frozen=True)
class Decision:
    action: Action
    why: str = ""


def decide(
    record: JobRecord | None, message: JobMessage, redeliveries: int, delivery_limit: int
) -> Decision:
    attempt = message.attempt
    if record is None:
        return Decision(Action.DROP, "the job has no record (deleted after its retention)")
    if record.attempts > attempt:
        return Decision(Action.SKIP, f"stale copy of attempt {attempt} (at {record.attempts})")
    if record.status == "succeeded":
        return Decision(Action.SKIP, "already succeeded")
    if record.status == "dead":
        if record.attempts == attempt:
            return Decision(Action.BURY, record.error or "dead")
        return Decision(Action.SKIP, "already dead")
    if record.status == "failed" and record.attempts == attempt:
        if attempt < message.max_attempts:
            return Decision(Action.RETRY, "the retry of a recorded failure may not be queued")
        return Decision(Action.BURY, record.error or "failed")
    if redeliveries >= delivery_limit:
        return Decision(
            Action.POISON,
            f"delivered {redeliveries + 1} times without an outcome"
            " (its worker died or was killed each time)",
        )
    return Decision(Action.RUN)
