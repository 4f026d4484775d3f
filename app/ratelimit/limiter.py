"""The rate limiter as the middleware sees it: Redis when it answers, else the fallback.

With Redis configured, every decision is one `EVALSHA` through the `redis`
guard. When the guard refuses or the call fails, the instance is in an
outage: with `fail_open` it decides in-process at the limit divided by the
live instances it last saw (so the fleet as a whole stays near the limit),
otherwise it makes no decision (the middleware answers 503). The first
successful call ends the outage. Each outage is logged once, when it starts,
and once when it ends.
"""

from __future__ import annotations

import collections
import logging
import time
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from app.cache.read_ahead import ReadAhead
from app.core.guard import Refused, call_guarded
from app.core.loop_metrics import LoopCounter
from app.core.outage import Outage
from app.ratelimit.algorithm import Decision
from app.ratelimit.limits import Limit
from app.ratelimit.memory_limiter import MemoryLimiter
from app.ratelimit.policies import Policy, display_key
from app.ratelimit.redis_limiter import RedisLimiter
from app.redis import REDIS_ERRORS, RedisService

log = logging.getLogger("keel.ratelimit")

RECENT_LIMITED = 20


class DecisionCounters:
    """`keel_ratelimit_decisions_total{result}`, counted on the event loop (core/loop_metrics)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        counter = LoopCounter(
            "keel_ratelimit_decisions",
            "Rate-limit decisions: allowed, limited, or degraded (decided without Redis"
            " during an outage, whatever the outcome).",
            ("result",),
            registry=registry,
        )
        self.allowed = counter.labels("allowed")
        self.limited = counter.labels("limited")
        self.degraded = counter.labels("degraded")


class RateLimiter:
    """Decides requests for the middleware and keeps what `state()` and `/readyz` show."""

    def __init__(
        self,
        counters: DecisionCounters,
        *,
        redis: RedisService | None = None,
        fail_open: bool = True,
        local: MemoryLimiter | None = None,
        fallback: MemoryLimiter | None = None,
    ) -> None:
        self.counters = counters
        self.redis = redis
        self.fail_open = fail_open
        self.local = local or MemoryLimiter()
        self.fallback = fallback or MemoryLimiter()
        self.remote: RedisLimiter | None = None
        if redis is not None and redis.batch is not None:
            self.remote = RedisLimiter(redis.batch)
        self.outage = Outage(
            "rate limits: redis", log, level=logging.WARNING if fail_open else logging.ERROR
        )
        self.recent_limited: collections.deque[dict[str, Any]] = collections.deque(
            maxlen=RECENT_LIMITED
        )
        self._divided: dict[tuple[Limit, int], Limit] = {}
        self._remote_prefix = redis.key("rl", "") if redis is not None else ""

    @property
    def backend(self) -> str:
        return "redis" if self.redis is not None and self.redis.enabled else "memory"

    @property
    def degraded(self) -> bool:
        return self.outage.active

    async def decide(
        self, policy: Policy, client_key: str, ahead: ReadAhead | None = None
    ) -> Decision | None:
        """The decision for one request; None when there is none to make (fail closed).
        `ahead`: a cache lease step to run in the same Redis call (see app.cache.read_ahead)."""
        remote = self.remote
        if remote is None:
            decision = self.local.hit_now(policy.bucket + client_key, policy.limit)
            return self._count(decision, policy, client_key)
        assert self.redis is not None
        breaker = self.redis.guard
        # `call_guarded`, inlined: this runs on every limited request, and the
        # coroutine layers it would add cost more than the rest of this method.
        if breaker.allow():
            started = time.perf_counter()
            try:
                reply = await remote.send(
                    self._remote_prefix + policy.bucket + client_key, policy.limit, ahead
                )
            except REDIS_ERRORS as exc:
                breaker.record(False, time.perf_counter() - started)
                self._failed(exc)
            except BaseException:
                breaker.release()
                raise
            else:
                breaker.record(True, time.perf_counter() - started)
                if self.outage.since is not None:
                    self._recovered()
                return self._count(remote.decision(reply, ahead), policy, client_key)
        elif self.outage.since is None:
            self._failed(f"the redis breaker is {breaker.state}")
        self.counters.degraded.inc()
        if not self.fail_open:
            return None
        live = self.redis.live_instances
        limit = self._divided.get((policy.limit, live))
        if limit is None:
            limit = self._divided[(policy.limit, live)] = policy.limit.divided(live)
        decision = self.fallback.hit_now(policy.bucket + client_key, limit)
        if not decision.allowed:
            self._note_limited(policy, client_key)
        return decision

    def _count(self, decision: Decision, policy: Policy, client_key: str) -> Decision:
        if decision.allowed:
            self.counters.allowed.inc()
        else:
            self.counters.limited.inc()
            self._note_limited(policy, client_key)
        return decision

    def _note_limited(self, policy: Policy, client_key: str) -> None:
        self.recent_limited.append(
            {"key": display_key(client_key), "policy": policy.name, "at": time.time()}
        )

    def _failed(self, error: BaseException | str) -> None:
        live = self.redis.live_instances if self.redis is not None else 1
        self.outage.failed(
            error,
            f"limiting in-process at each limit / {live} live instance(s) until it answers again"
            if self.fail_open
            else "limited routes answer 503 (fail_open = false) until it answers again",
        )

    def _recovered(self) -> None:
        self.outage.recovered("shared limits restored")
        # The next outage starts from fresh local budgets, not this one's leftovers.
        self.fallback.clear()

    async def probe(self) -> None:
        """During an outage, ask Redis directly, so recovery shows without limited traffic.

        `/readyz` calls this: a load balancer polling readiness ends the outage
        as soon as Redis answers, even when no limited request arrives.
        """
        if not self.outage.active or self.remote is None or self.redis is None:
            return
        try:
            await call_guarded(self.redis.guard, self.remote.ping, REDIS_ERRORS)
        except Refused:
            return
        except REDIS_ERRORS as exc:
            self.outage.failed(exc)
            return
        self._recovered()

    def retry_after(self) -> float:
        """Seconds a refused (fail-closed) client should wait."""
        if self.redis is None:
            return 1.0
        return max(1.0, self.redis.guard.retry_after())


RATELIMITER = web.AppKey("keel.ratelimiter", RateLimiter)
