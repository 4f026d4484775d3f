"""The bus that carries publications to every instance, and its in-process implementation.

A payload is a serialized `message` op (`protocol.message`): a bus moves bytes
and never decodes them, so the cost of a message on an instance does not grow
with the number of instances publishing.

Contract, held by `tests/websocket/test_bus_contract.py` for every bus:

- `publish(channel, payload)` calls `deliver(channel, payload)` on this
  instance before it returns — local subscribers never wait for, or depend
  on, the transport between instances — and on every other instance that
  watches `channel`, once each, in the order published by this instance.
- `watch(channel)` / `unwatch(channel)`: this instance gained its first /
  lost its last local subscriber of `channel`. A bus that spans instances
  receives only watched channels, so an instance never pays for traffic
  nobody on it wants.
- `await ready(channel)` returns once a watched channel is received from
  every instance, or at once when that cannot be had now (the bus is
  degraded: local delivery goes on).
- `await caught_up()` returns once every publication made anywhere before the
  call has been delivered here (at once for a bus with nothing in flight, or
  when that cannot be had now). A subscribe that reads history uses it: what
  was published before the read is then already in hand.
- `running()` is the bus's whole life (its connections and tasks).
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar

Deliver = Callable[[str, bytes], int]


class Bus(abc.ABC):
    backend: ClassVar[str]

    def __init__(self, deliver: Deliver) -> None:
        self.deliver = deliver

    @abc.abstractmethod
    async def publish(self, channel: str, payload: bytes) -> None:
        """Deliver here at once, and to every instance watching `channel`."""

    @abc.abstractmethod
    def watch(self, channel: str) -> None:
        """`channel` has its first local subscriber."""

    @abc.abstractmethod
    def unwatch(self, channel: str) -> None:
        """`channel` lost its last local subscriber."""

    @abc.abstractmethod
    async def ready(self, channel: str) -> None:
        """Return once `channel` is received from every instance (or cannot be now)."""

    async def caught_up(self) -> None:
        """Return once what was published anywhere before now has been delivered here."""
        return None

    @property
    @abc.abstractmethod
    def healthy(self) -> bool:
        """Do publications reach every instance right now?"""

    @property
    def problem(self) -> str:
        """Why not, when not healthy."""
        return ""

    @abc.abstractmethod
    def running(self) -> contextlib.AbstractAsyncContextManager[None]:
        """The bus's whole life: its connections and tasks."""

    def state(self) -> dict[str, Any]:
        return {"backend": self.backend, "healthy": self.healthy}


class MemoryBus(Bus):
    """One instance, no transport: publishing is delivering. The embedded default."""

    backend = "memory"

    async def publish(self, channel: str, payload: bytes) -> None:
        self.deliver(channel, payload)

    def watch(self, channel: str) -> None:
        return None  # nothing to receive from elsewhere

    def unwatch(self, channel: str) -> None:
        return None

    async def ready(self, channel: str) -> None:
        return None

    @property
    def healthy(self) -> bool:
        return True

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        yield
