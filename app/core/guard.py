"""How code calls a dependency through a circuit breaker, and the minimal breaker.

Every dependency (`redis`, `amqp`, `shard.<n>`, `upstream.<name>`) is reached
through a `Guard`: ask `allow()` before the call (False: refused, do not call;
`retry_after()` says for how long), then report the outcome with `record()` —
or `release()` when the call ended with no outcome to judge (cancelled).
What counts as a failure is decided by the caller, per use — a Redis timeout
is one, a 404 from an upstream never is.

A dependency that has a probe of its own, made outside the guard (the Redis
heartbeat, a shard's health check, the broker connection being made again),
reports its success with `probe_succeeded()`: a guard refusing calls lets them
through again at once instead of at the end of its open time, so a service is
back within a probe's interval of its dependency, whatever `open_seconds` is.

`MinimalGuard` is the open/closed guard that the `redis` plugin uses until the
breakers plugin is enabled and replaces it with a full breaker under the same
interface: after `failures_to_open` consecutive failures it refuses calls for
`open_seconds`, then lets calls through again and closes on the first success.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Literal, Protocol, TypeVar

T = TypeVar("T")

GuardState = Literal["closed", "open", "half_open", "forced_open", "disabled"]


class Guard(Protocol):
    name: str

    @property
    def state(self) -> GuardState: ...

    def allow(self) -> bool:
        """May a call go ahead now? A True must be followed by exactly one `record()`."""
        ...

    def record(self, ok: bool, seconds: float = 0.0) -> None:
        """The outcome of an allowed call and how long it took."""
        ...

    def release(self) -> None:
        """Instead of `record()`: the call ended without an outcome to judge (cancelled,
        or an error that says nothing about the dependency). Frees a half-open slot."""
        ...

    def retry_after(self) -> float:
        """Seconds until a refused caller may try again (0 when not refusing)."""
        ...

    def probe_succeeded(self) -> None:
        """The dependency answered a probe made outside the guard: if the guard refuses
        calls, it stops now (a breaker half-opens: its trial calls decide)."""
        ...


class Refused(Exception):
    """The guard did not let the call go ahead; nothing was called."""


async def call_guarded(
    guard: Guard, call: Callable[[], Awaitable[T]], failures: tuple[type[BaseException], ...]
) -> T:
    """`call()` through `guard`: `Refused` when it may not go ahead; an exception in
    `failures` is recorded as a failure and re-raised; any other (a cancellation)
    releases the permission without a verdict."""
    if not guard.allow():
        raise Refused(guard.name)
    started = time.perf_counter()
    try:
        result = await call()
    except failures:
        guard.record(False, time.perf_counter() - started)
        raise
    except BaseException:
        guard.release()
        raise
    guard.record(True, time.perf_counter() - started)
    return result


class MinimalGuard:
    """Open after consecutive failures, closed again by the first success."""

    def __init__(
        self,
        name: str,
        *,
        failures_to_open: int = 1,
        open_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.failures_to_open = failures_to_open
        self.open_seconds = open_seconds
        self._clock = clock
        self._failures = 0
        self._open_until = 0.0

    @property
    def state(self) -> GuardState:
        if self._failures < self.failures_to_open:
            return "closed"
        return "open" if self._clock() < self._open_until else "half_open"

    def allow(self) -> bool:
        return self.state != "open"

    def record(self, ok: bool, seconds: float = 0.0) -> None:
        if ok:
            self._failures = 0
            self._open_until = 0.0
            return
        self._failures += 1
        if self._failures >= self.failures_to_open:
            self._open_until = self._clock() + self.open_seconds

    def release(self) -> None:
        """Nothing held: this guard does not limit concurrent trial calls."""

    def retry_after(self) -> float:
        return max(0.0, self._open_until - self._clock()) if self.state == "open" else 0.0

    def probe_succeeded(self) -> None:
        """Let calls through now; the first success closes it, a failure opens it again."""
        self._open_until = min(self._open_until, self._clock())
