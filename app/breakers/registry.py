"""The named breakers of one instance, their metrics, logs and transition events.

Breakers are made on first use from `[breakers]` and `[breakers.<name>]`.
Every transition is logged, counted in `keel_breaker_transitions_total{breaker,to}`
and queued for the `transitions` event hook, which `dispatch()` (run by the
plugin's lifespan) delivers: transitions happen inside synchronous `allow()` and
`record()` calls, which cannot await subscribers.

`keel_breaker_state{breaker}` is read at scrape time: 0 closed, 1 half-open,
2 open. An operator's forced open reads 2 (it refuses calls exactly as open
does, so alerts on open fire); disabled reads 0 (it lets every call through
as closed does). The transitions counter's `to` label and `state()` tell them apart.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge

from app.breakers.actions import ACTIONS, Action, ActionResult
from app.breakers.breaker import Breaker
from app.breakers.machine import Machine, Transition
from app.breakers.settings import BreakersSettings
from app.core.broadcast import Broadcast
from app.core.events import EventHook
from app.core.guard import GuardState

log = logging.getLogger("keel.breakers")

GAUGE_VALUES: dict[GuardState, int] = {
    "closed": 0,
    "half_open": 1,
    "open": 2,
    "forced_open": 2,
    "disabled": 0,
}

# Transitions waiting for the dispatcher; bounded so that an app whose
# lifespan never runs (a script, a test) cannot grow it without end.
_PENDING_LIMIT = 1000


class BreakerRegistry:
    """Every breaker of this instance by name; published as `app[BREAKERS]`."""

    def __init__(
        self,
        settings: BreakersSettings,
        registry: CollectorRegistry,
        broadcast: Broadcast | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`broadcast` carries operator actions to every instance (this one only by default)."""
        self.settings = settings
        self._clock = clock
        self._breakers: dict[str, Breaker] = {}
        self.transitions: EventHook[Transition] = EventHook("breakers.transitions")
        self._pending: deque[Transition] = deque(maxlen=_PENDING_LIMIT)
        self._wake = asyncio.Event()
        self.broadcast = broadcast or Broadcast("local")
        self.broadcast.handle("breakers", self._apply_action)
        self._transitions = Counter(
            "keel_breaker_transitions",
            "Circuit breaker transitions by breaker and new state.",
            ("breaker", "to"),
            registry=registry,
        )
        self._state = Gauge(
            "keel_breaker_state",
            "Circuit breaker state: 0 closed (or disabled), 1 half-open, 2 open (or forced open).",
            ("breaker",),
            registry=registry,
        )

    def get(self, name: str) -> Breaker:
        """The breaker `name`, made from its policy on first use."""
        breaker = self._breakers.get(name)
        if breaker is None:
            machine = Machine(name, self.settings.policy(name), self._clock, self._on_transition)
            breaker = self._breakers[name] = Breaker(machine, self._clock)
            self._state.labels(name).set_function(lambda: GAUGE_VALUES[machine.peek()])
        return breaker

    def __contains__(self, name: object) -> bool:
        return name in self._breakers

    def __iter__(self) -> Iterator[Breaker]:
        return iter(sorted(self._breakers.values(), key=lambda b: b.name))

    def __len__(self) -> int:
        return len(self._breakers)

    # Operator actions: on every instance the broadcast reaches (all of them with Redis).

    async def reset(self, name: str) -> ActionResult:
        """Close `name` with an empty window, on every instance."""
        return await self.act("reset", name)

    async def force_open(self, name: str) -> ActionResult:
        """Refuse every call through `name` until reset, on every instance."""
        return await self.act("force_open", name)

    async def disable(self, name: str) -> ActionResult:
        """Let every call through `name`, judging nothing, until reset, on every instance."""
        return await self.act("disable", name)

    async def act(self, action: Action, name: str) -> ActionResult:
        """Apply `action` to breaker `name` on every instance; report who did."""
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}: expected one of {', '.join(ACTIONS)}")
        delivery = await self.broadcast.send("breakers", {"action": action, "breaker": name})
        return ActionResult.of(action, name, delivery)

    def apply(self, action: Action, name: str) -> bool:
        """Apply an operator action to this instance's breaker; False if there is none."""
        breaker = self._breakers.get(name)
        if breaker is None:
            return False
        getattr(breaker.machine, action)()
        return True

    def _apply_action(self, payload: dict[str, Any]) -> bool:
        action, name = payload.get("action"), str(payload.get("breaker"))
        if action not in ACTIONS:
            log.warning("ignoring an unknown breaker action: %r", action)
            return False
        applied = self.apply(action, name)
        log.info("breaker %s: operator %s%s", name, action, "" if applied else " (none here)")
        return applied

    def snapshot(self) -> list[dict[str, Any]]:
        """Each breaker's state, policy and window, for `state()` and the dashboard."""
        out = []
        for breaker in self:
            stats = breaker.stats()
            policy = breaker.machine.policy
            out.append(
                {
                    "name": breaker.name,
                    "state": breaker.state,
                    "retry_after": round(breaker.retry_after(), 3),
                    "calls": stats.calls,
                    "failures": stats.failures,
                    "slow_calls": stats.slow_calls,
                    "failure_rate": round(stats.failure_rate, 1),
                    "slow_call_rate": round(stats.slow_call_rate, 1),
                    "trials_in_flight": breaker.machine.trials_in_flight,
                    "policy": {
                        "failure_rate": policy.failure_rate,
                        "minimum_calls": policy.minimum_calls,
                        "window": policy.window,
                        "open_seconds": policy.open_seconds,
                        "half_open_calls": policy.half_open_calls,
                        "slow_call_seconds": policy.slow_call_seconds,
                        "slow_call_rate": policy.slow_call_rate,
                    },
                }
            )
        return out

    def _on_transition(self, transition: Transition) -> None:
        level = logging.WARNING if transition.to in ("open", "forced_open") else logging.INFO
        log.log(
            level,
            "breaker %s: %s -> %s (%s)",
            transition.breaker,
            transition.source,
            transition.to,
            transition.reason,
        )
        self._transitions.labels(transition.breaker, transition.to).inc()
        self._pending.append(transition)
        self._wake.set()

    async def dispatch(self) -> None:
        """Deliver queued transitions to the event hook's subscribers, in order, forever."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._pending:
                await self.transitions.emit(self._pending.popleft())


BREAKERS = web.AppKey("keel.breakers", BreakerRegistry)
