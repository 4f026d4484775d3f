"""A typed in-process event hook: plugins subscribe, a producer emits after it commits."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

E = TypeVar("E")
Subscriber = Callable[[E], Awaitable[None]]

log = logging.getLogger("keel.events")


class EventHook(Generic[E]):
    """Subscribers run in order after the producer's change is durable.

    A failing subscriber is logged and the others still run: the change it
    reacts to has already happened, so its failure must not fail the request.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._subscribers: list[Subscriber[E]] = []

    def subscribe(self, subscriber: Subscriber[E]) -> None:
        self._subscribers.append(subscriber)

    async def emit(self, event: E) -> None:
        for subscriber in self._subscribers:
            try:
                await subscriber(event)
            except Exception:
                log.exception("%s subscriber %r failed", self.name, subscriber)
