"""`Breaker`: a named state machine behind the `Guard` protocol, for plugin authors.

Three ways to use one:

    if breaker.allow():                      # the Guard protocol, by hand
        ...; breaker.record(ok, seconds)

    async with breaker.guarding(RedisError, OSError):   # or `async with breaker:`
        await client.get(key)

    @breaker.guarding(RedisError, OSError)   # as a decorator
    async def fetch(key: str) -> bytes: ...

Refused calls raise `CircuitOpen` (503 `circuit_open`, with `Retry-After`).
Only the declared exception types are failures (`async with breaker:` declares
`Exception`); a call ended by any other exception, or cancelled, gives back its
permission without an outcome, so it is neither a success nor a failure.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import ParamSpec, TypeVar

from app.breakers.machine import Machine, WindowStats
from app.core.guard import GuardState
from app.errors import CircuitOpen

P = ParamSpec("P")
R = TypeVar("R")


class Breaker:
    """One named circuit breaker; implements `app.core.guard.Guard`."""

    def __init__(self, machine: Machine, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = machine.name
        self.machine = machine
        # Durations are measured on this clock (the machine's may be a test's).
        self._timer = clock
        self._default = _Call(self, (Exception,))

    @property
    def state(self) -> GuardState:
        return self.machine.state

    def allow(self) -> bool:
        return self.machine.allow()

    def record(self, ok: bool, seconds: float = 0.0) -> None:
        self.machine.record(ok, seconds)

    def release(self) -> None:
        self.machine.release()

    def retry_after(self) -> float:
        return self.machine.retry_after()

    def probe_succeeded(self) -> None:
        self.machine.probe_succeeded()

    def stats(self) -> WindowStats:
        return self.machine.stats()

    def refusal(self) -> CircuitOpen:
        """The error a refused call raises: 503 `circuit_open` with Retry-After."""
        return CircuitOpen(
            f"{self.name} is unavailable (circuit {self.state.replace('_', ' ')})",
            retry_after=self.retry_after(),
            details={"breaker": self.name},
        )

    def guarding(self, *failures: type[BaseException]) -> _Call:
        """A context manager and decorator counting `failures` (default: Exception)."""
        return _Call(self, failures or (Exception,))

    async def __aenter__(self) -> None:
        await self._default.__aenter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._default.__aexit__(exc_type, exc, tb)

    def __repr__(self) -> str:
        return f"<Breaker {self.name} {self.state}>"


class _Call:
    """One use of a breaker with its declared failures; safe to share between tasks.

    Start times are kept per task (a stack, for nesting), so one
    `_Call` (or the breaker itself) can guard many concurrent calls.
    """

    def __init__(self, breaker: Breaker, failures: tuple[type[BaseException], ...]) -> None:
        self.breaker = breaker
        self.failures = failures
        self._started: dict[int, list[float]] = {}

    async def __aenter__(self) -> None:
        if not self.breaker.allow():
            raise self.breaker.refusal()
        task = id(asyncio.current_task())
        self._started.setdefault(task, []).append(self.breaker._timer())

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task = id(asyncio.current_task())
        stack = self._started[task]
        started = stack.pop()
        if not stack:
            del self._started[task]
        seconds = self.breaker._timer() - started
        if exc is None:
            self.breaker.record(True, seconds)
        elif isinstance(exc, self.failures):
            self.breaker.record(False, seconds)
        else:
            self.breaker.release()

    def __call__(self, fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        @functools.wraps(fn)
        async def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            async with self:
                return await fn(*args, **kwargs)

        return guarded
