"""RabbitMQ queue names and declare arguments. Pure code.

    publish ──▶ <name>.jobs ──(consumer)──▶ ack after the outcome is recorded
                  │  quorum, durable; x-delivery-limit: a message returned that
                  │  many times without an ack (poison) is dead-lettered
                  ▼
                <name>.dead   quorum, durable; nothing consumes it: an operator
                              requeues or purges what is there

    retry/delay ──▶ <name>.delay.<ms>  quorum, durable; x-message-ttl = ms; expired
                                       messages are dead-lettered to <name>.jobs;
                                       x-expires removes the queue once unused

Everything goes through the default exchange (routing key = queue name) with
`mandatory` set, so a publish to a queue that does not exist is returned and
fails rather than vanishing. Quorum queues dead-letter `at-least-once` (which
needs `x-overflow: reject-publish`): a message is removed from the source only
once the target has confirmed it. Where quorum queues are unavailable the same
names are declared as classic durable queues; classic queues dead-letter at
most once and have no delivery limit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

QueueType = Literal["quorum", "classic"]

# An unused delay queue outlives its TTL by this much (ms): the last message
# published to it has long been dead-lettered by then. Every publish to a
# delay queue re-declares it at least every half of this, which resets the clock.
DELAY_QUEUE_SPARE_MS = 10 * 60 * 1000


@dataclass(frozen=True)
class Topology:
    name: str

    @property
    def main(self) -> str:
        return f"{self.name}.jobs"

    @property
    def dead(self) -> str:
        return f"{self.name}.dead"

    def delay(self, ms: int) -> str:
        return f"{self.name}.delay.{ms}"

    def is_delay(self, queue: str) -> bool:
        return queue.startswith(f"{self.name}.delay.")

    def main_arguments(self, kind: QueueType, delivery_limit: int) -> dict[str, Any]:
        arguments = _dead_letter_to(self.dead, kind)
        if kind == "quorum":
            arguments["x-delivery-limit"] = delivery_limit
        return arguments

    def dead_arguments(self, kind: QueueType) -> dict[str, Any]:
        return {"x-queue-type": "quorum"} if kind == "quorum" else {}

    def delay_arguments(self, kind: QueueType, ms: int) -> dict[str, Any]:
        return {
            **_dead_letter_to(self.main, kind),
            "x-message-ttl": ms,
            "x-expires": ms + DELAY_QUEUE_SPARE_MS,
        }


def _dead_letter_to(target: str, kind: QueueType) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": target,
    }
    if kind == "quorum":
        arguments.update(
            {
                "x-queue-type": "quorum",
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            }
        )
    return arguments
