"""Operator actions (`reset`, `force_open`, `disable`) applied on every instance.

Without Redis an action applies to this instance. With `[redis] url` set, the
action is published on `<key_prefix>breakers:control`; every instance
(this one too) listens on a dedicated pub/sub connection, applies it and
publishes an acknowledgement on the same channel. The caller waits up to
`wait` seconds for an acknowledgement from every live instance (the redis
plugin's heartbeat set) and returns who applied it, who did not answer and
who has no such breaker. If Redis cannot be reached the action still applies
here, and the result says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

if TYPE_CHECKING:
    from app.breakers.registry import BreakerRegistry
    from app.plugins.redis import RedisService

log = logging.getLogger("keel.breakers")

Action = Literal["reset", "force_open", "disable"]
ACTIONS: tuple[Action, ...] = ("reset", "force_open", "disable")

ACK_WAIT = 1.0  # seconds: "applies to every instance within a second"


@dataclass
class ActionResult:
    """Which instances applied an operator action."""

    id: str
    action: Action
    breaker: str
    applied: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)  # answered: no such breaker there
    missing: list[str] = field(default_factory=list)  # live, but no answer in time
    error: str = ""  # why the action reached this instance only

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "action": self.action,
            "breaker": self.breaker,
            "applied": sorted(self.applied),
            "unknown": sorted(self.unknown),
            "missing": sorted(self.missing),
            "error": self.error,
        }


class OperatorControl:
    """Applies operator actions here, or everywhere through Redis pub/sub."""

    def __init__(
        self,
        registry: BreakerRegistry,
        instance_id: str,
        redis: RedisService | None = None,
        *,
        wait: float = ACK_WAIT,
    ) -> None:
        self.registry = registry
        self.instance_id = instance_id
        self.redis = redis if redis is not None and redis.enabled else None
        self.wait = wait
        self._acks: dict[str, asyncio.Queue[dict[str, Any]]] = {}
        self._subscribed = asyncio.Event()

    @property
    def channel(self) -> str:
        assert self.redis is not None
        return self.redis.key("breakers", "control")

    async def apply(self, action: Action, breaker: str) -> ActionResult:
        """Apply `action` to `breaker` on every instance reachable; report who did."""
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}: expected one of {', '.join(ACTIONS)}")
        result = ActionResult(uuid.uuid4().hex, action, breaker)
        if self.redis is None:
            self._apply_here(result)
            return result
        if not self._subscribed.is_set():
            result.error = "not listening on redis yet: applied on this instance only"
            self._apply_here(result)
            return result
        acks: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._acks[result.id] = acks
        try:
            expected = await self._live_instances()
            await self._publish(
                {
                    "kind": "action",
                    "id": result.id,
                    "action": action,
                    "breaker": breaker,
                    "origin": self.instance_id,
                }
            )
            await self._collect(result, acks, expected)
        except (RedisError, OSError) as exc:
            result.error = f"redis unreachable ({exc}): applied on this instance only"
            if self.instance_id not in result.applied + result.unknown:
                self._apply_here(result)
        finally:
            del self._acks[result.id]
        return result

    def _apply_here(self, result: ActionResult) -> None:
        done = self.registry.apply(result.action, result.breaker)
        (result.applied if done else result.unknown).append(self.instance_id)

    async def _live_instances(self) -> set[str]:
        assert self.redis is not None
        assert self.redis.client is not None
        members = await self.redis.client.zrange(self.redis.key("instances"), 0, -1)
        return {m.decode() if isinstance(m, bytes) else str(m) for m in members} | {
            self.instance_id
        }

    async def _collect(
        self, result: ActionResult, acks: asyncio.Queue[dict[str, Any]], expected: set[str]
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
            (result.applied if ack.get("applied") else result.unknown).append(instance)
        result.missing = sorted(expected - answered)

    async def _publish(self, message: dict[str, Any]) -> None:
        assert self.redis is not None
        assert self.redis.client is not None
        await self.redis.client.publish(self.channel, json.dumps(message))

    async def _on_message(self, data: bytes) -> None:
        try:
            message = json.loads(data)
            kind = message["kind"]
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a malformed breaker control message: %r", data[:200])
            return
        if kind == "ack":
            queue = self._acks.get(str(message.get("id")))
            if queue is not None:
                queue.put_nowait(message)
        elif kind == "action" and message.get("action") in ACTIONS:
            applied = self.registry.apply(message["action"], str(message.get("breaker")))
            log.info(
                "breaker %s: operator %s from %s%s",
                message.get("breaker"),
                message["action"],
                message.get("origin"),
                "" if applied else " (no such breaker here)",
            )
            await self._publish(
                {
                    "kind": "ack",
                    "id": message.get("id"),
                    "instance": self.instance_id,
                    "applied": applied,
                }
            )

    @contextlib.asynccontextmanager
    async def listening(self) -> AsyncIterator[None]:
        """Listen for actions and acknowledgements while inside (no-op without Redis)."""
        if self.redis is None or self.redis.client is None:
            yield
            return
        pubsub = self.redis.client.pubsub()
        with contextlib.suppress(RedisError, OSError):
            await pubsub.subscribe(self.channel)  # an outage here is retried by the loop
            self._subscribed.set()
        task = asyncio.create_task(self._listen(pubsub), name="keel.breakers.control")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            self._subscribed.clear()
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _listen(self, pubsub: PubSub) -> None:
        while True:
            try:
                if not pubsub.subscribed:
                    await pubsub.subscribe(self.channel)
                    self._subscribed.set()
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            except (RedisError, OSError) as exc:
                if self._subscribed.is_set():
                    log.warning("breaker control channel lost (%s); retrying every second", exc)
                self._subscribed.clear()
                await asyncio.sleep(1.0)
                continue
            if message is not None and message.get("type") == "message":
                try:
                    await self._on_message(message["data"])
                except (RedisError, OSError) as exc:
                    log.warning("could not acknowledge a breaker action: %s", exc)
