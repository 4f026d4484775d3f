"""Actions applied on every live instance, each instance acknowledging (operator actions).

A plugin registers a handler for a kind of action (`handle("breakers", fn)`);
`send(kind, payload)` applies it on every instance and reports who did. On
its own a `Broadcast` reaches this instance only. With a transport attached
(the redis plugin attaches one over Redis pub/sub while it runs) the action is
published to every instance — this one too — each runs its handler and
answers; the sender waits up to `wait` seconds for an answer from every live
instance and reports who applied it, who has nothing to apply it to, and who
did not answer. If the transport cannot be used the action still applies here,
and the result says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import web

log = logging.getLogger("keel.broadcast")

ACK_WAIT = 1.0  # seconds: "applies to every instance within a second"

# Applies an action's payload here; False when there is nothing here to apply it to.
Handler = Callable[[dict[str, Any]], bool]


class TransportUnavailable(Exception):
    """The transport cannot carry a message now (its dependency is down)."""


class Transport(Protocol):
    """How messages reach every instance (`app.redis.broadcast` over Redis pub/sub)."""

    name: str

    @property
    def ready(self) -> bool:
        """Listening: messages published now reach this instance too."""
        ...

    async def publish(self, message: dict[str, Any]) -> None: ...

    async def live_instances(self) -> set[str]: ...

    def listening(
        self, receive: Callable[[dict[str, Any]], Any]
    ) -> contextlib.AbstractAsyncContextManager[None]:
        """Hand every message received to `receive` while inside."""
        ...


@dataclass
class Delivery:
    """Which instances applied an action."""

    id: str
    applied: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)  # answered: nothing to apply it to
    missing: list[str] = field(default_factory=list)  # live, but no answer in time
    error: str = ""  # why the action reached this instance only


class Broadcast:
    """This instance's end: handlers by kind, and `send()` to every instance."""

    def __init__(self, instance_id: str, *, wait: float = ACK_WAIT) -> None:
        self.instance_id = instance_id
        self.wait = wait
        self._handlers: dict[str, Handler] = {}
        self._transport: Transport | None = None
        self._acks: dict[str, asyncio.Queue[dict[str, Any]]] = {}

    @property
    def cross_instance(self) -> bool:
        return self._transport is not None

    def handle(self, kind: str, handler: Handler) -> None:
        self._handlers[kind] = handler

    @contextlib.asynccontextmanager
    async def attached(self, transport: Transport) -> AsyncIterator[None]:
        """Send through `transport`, and receive from it, while inside."""
        async with transport.listening(self.receive):
            self._transport = transport
            try:
                yield
            finally:
                self._transport = None

    async def send(self, kind: str, payload: dict[str, Any]) -> Delivery:
        """Apply on every instance reachable; report who did."""
        delivery = Delivery(uuid.uuid4().hex)
        transport = self._transport
        if transport is None:
            self._apply_here(kind, payload, delivery)
            return delivery
        if not transport.ready:
            delivery.error = f"not listening on {transport.name} yet: applied on this instance only"
            self._apply_here(kind, payload, delivery)
            return delivery
        acks: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._acks[delivery.id] = acks
        try:
            expected = await transport.live_instances() | {self.instance_id}
            await transport.publish(
                {
                    "type": "action",
                    "id": delivery.id,
                    "kind": kind,
                    "payload": payload,
                    "origin": self.instance_id,
                }
            )
            await self._collect(delivery, acks, expected)
        except TransportUnavailable as exc:
            delivery.error = f"{transport.name} unreachable ({exc}): applied on this instance only"
            if self.instance_id not in delivery.applied + delivery.unknown:
                self._apply_here(kind, payload, delivery)
        finally:
            del self._acks[delivery.id]
        return delivery

    def _run(self, kind: str, payload: dict[str, Any]) -> bool:
        handler = self._handlers.get(kind)
        return handler(payload) if handler is not None else False

    def _apply_here(self, kind: str, payload: dict[str, Any], delivery: Delivery) -> None:
        (delivery.applied if self._run(kind, payload) else delivery.unknown).append(
            self.instance_id
        )

    async def _collect(
        self, delivery: Delivery, acks: asyncio.Queue[dict[str, Any]], expected: set[str]
    ) -> None:
        deadline = time.monotonic() + self.wait
        answered: set[str] = set()
        while not expected <= answered:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                async with asyncio.timeout(remaining):
                    ack = await acks.get()
            except TimeoutError:
                break
            instance = str(ack["instance"])
            answered.add(instance)
            (delivery.applied if ack.get("applied") else delivery.unknown).append(instance)
        delivery.missing = sorted(expected - answered)

    async def receive(self, message: dict[str, Any]) -> None:
        """A message from the transport: an action to apply and acknowledge, or an ack."""
        if message.get("type") == "ack":
            queue = self._acks.get(str(message.get("id")))
            if queue is not None:
                queue.put_nowait(message)
            return
        if message.get("type") != "action" or not isinstance(message.get("payload"), dict):
            log.warning("ignoring a malformed broadcast message: %r", str(message)[:200])
            return
        applied = self._run(str(message.get("kind")), message["payload"])
        transport = self._transport
        if transport is None:
            return
        try:
            await transport.publish(
                {
                    "type": "ack",
                    "id": message.get("id"),
                    "instance": self.instance_id,
                    "applied": applied,
                }
            )
        except TransportUnavailable as exc:
            log.warning("could not acknowledge a broadcast action: %s", exc)


BROADCAST = web.AppKey("keel.broadcast", Broadcast)
