"""Presence: how many subscribers a channel has, on every instance.

`count(channel)` answers a client's `{"op": "presence"}`. This instance's own
subscribers are counted exactly, from the hub; other instances' from where
they report theirs (Redis: `redis_presence.py`). `changed()` is called
whenever a local subscription starts or ends, so a shared count can follow.
`PresenceUnavailable` says the count cannot be had now; the client gets an
`error` rather than a number that leaves instances out.
"""

from __future__ import annotations

import abc
import contextlib
from typing import Any, ClassVar

from app.websocket.hub import Hub


class PresenceUnavailable(Exception):
    """Other instances' counts cannot be read now."""


class Presence(abc.ABC):
    backend: ClassVar[str]

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    @abc.abstractmethod
    async def count(self, channel: str) -> int:
        """Subscribers of `channel` on every live instance; PresenceUnavailable if unknown."""

    def changed(self) -> None:
        """A local subscription started or ended."""
        return None

    def running(self) -> contextlib.AbstractAsyncContextManager[None]:
        """Presence's whole life (reporting this instance's counts, where shared)."""
        return contextlib.nullcontext()

    def state(self) -> dict[str, Any]:
        return {"backend": self.backend}


class LocalPresence(Presence):
    """One instance: the hub's count is the whole count."""

    backend = "memory"

    async def count(self, channel: str) -> int:
        return self.hub.subscribers(channel)
