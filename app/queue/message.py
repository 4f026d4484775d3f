"""What travels through a queue: one attempt of one job. Pure code.

A message carries everything a worker needs to run the attempt without the
record (task, args, attempt, max_attempts); the record in the sharded storage
stays the truth about the job's status. The body is JSON:
`{"id", "task", "args", "attempt", "max_attempts"}`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from app.core.json_codec import JSONDecodeError, dumps, loads


class BadMessage(ValueError):
    """A body that is not one of our messages (it is dead-lettered, never run)."""


@dataclass(frozen=True, slots=True)
class JobMessage:
    id: str
    task: str
    args: dict[str, Any]
    attempt: int  # 1 for the first run
    max_attempts: int

    def encode(self) -> bytes:
        return dumps(
            {
                "id": self.id,
                "task": self.task,
                "args": self.args,
                "attempt": self.attempt,
                "max_attempts": self.max_attempts,
            }
        )

    @classmethod
    def decode(cls, body: bytes) -> JobMessage:
        try:
            data = loads(body)
        except JSONDecodeError as exc:
            raise BadMessage(f"not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise BadMessage("not a JSON object")
        try:
            message = cls(
                id=data["id"],
                task=data["task"],
                args=data["args"],
                attempt=data["attempt"],
                max_attempts=data["max_attempts"],
            )
        except KeyError as exc:
            raise BadMessage(f"missing {exc}") from None
        if not (
            isinstance(message.id, str)
            and isinstance(message.task, str)
            and isinstance(message.args, dict)
            and _positive_int(message.attempt)
            and _positive_int(message.max_attempts)
        ):
            raise BadMessage("a field has the wrong type")
        return message

    def next_attempt(self) -> JobMessage:
        return replace(self, attempt=self.attempt + 1)

    def first_attempt(self) -> JobMessage:
        return replace(self, attempt=1)


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def retry_delay(failed_attempt: int, backoff: float, max_backoff: float) -> float:
    """Seconds before the next attempt after attempt `failed_attempt` (1-based) failed:
    retry n = failed_attempt - 1 waits `backoff` * 2^n, capped at `max_backoff`."""
    exponent = min(failed_attempt - 1, 60)  # 2^60 s is already beyond any cap
    return float(min(max_backoff, backoff * 2**exponent))


def delay_bucket_ms(seconds: float) -> int:
    """A delay in whole milliseconds rounded UP to two significant figures.

    RabbitMQ delays go through one queue per distinct delay (a queue-wide TTL,
    so no message waits behind a longer one); rounding bounds how many such
    queues exist while never running a job early, and at most ~10% late.
    """
    ms = math.ceil(seconds * 1000)
    if ms <= 100:
        return max(ms, 0)
    scale = 10 ** (len(str(ms)) - 2)
    return int(math.ceil(ms / scale) * scale)
