"""The circuit breaker's state machine: pure, IO-free, driven by an injected clock.

Semantics follow resilience4j's count-based breaker:

- closed: every call is let through; the outcomes of the last `window` calls
  are kept. Once at least `minimum_calls` are in the window (or the window is
  full, if smaller), the breaker opens when the failure rate reaches
  `failure_rate` % or the rate of calls slower than `slow_call_seconds` reaches
  `slow_call_rate` %.
- open: every call is refused for `open_seconds`; then half-open. Sooner when
  the dependency's own probe answered (`probe_succeeded()`): half-open at once.
- half_open: at most `half_open_calls` trial calls are let through, the rest
  are refused as if open. When every trial has reported, the rates over the
  trials decide: at or above a threshold -> open again, below -> closed with
  an empty window.
- forced_open / disabled: operator states, left only by `reset()`: the first
  refuses every call, the second lets every call through and judges nothing.

Outcomes arriving while open, forced open or disabled come from calls allowed
earlier and are ignored. `release()` gives back a permission without an
outcome (a call cancelled, or ended by an exception not declared a failure).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from app.core.guard import GuardState

# A refused caller in half-open (every trial slot taken) may ask again soon:
# the trials in flight decide within about one call's time.
HALF_OPEN_RETRY_AFTER = 1.0


@dataclass(frozen=True, slots=True)
class Policy:
    """When a breaker opens and for how long; `[breakers]` fields, validated there."""

    failure_rate: float = 50.0
    minimum_calls: int = 10
    window: int = 20
    open_seconds: float = 10.0
    half_open_calls: int = 3
    slow_call_seconds: float = 5.0
    slow_call_rate: float = 100.0


@dataclass(frozen=True, slots=True)
class Transition:
    """One change of state, with why it happened."""

    breaker: str
    source: GuardState
    to: GuardState
    reason: str
    at: float


@dataclass(frozen=True, slots=True)
class Outcome:
    failed: bool
    slow: bool


@dataclass(frozen=True, slots=True)
class WindowStats:
    """What the current window (or the half-open trials) holds."""

    calls: int
    failures: int
    slow_calls: int

    @property
    def failure_rate(self) -> float:
        return 100.0 * self.failures / self.calls if self.calls else 0.0

    @property
    def slow_call_rate(self) -> float:
        return 100.0 * self.slow_calls / self.calls if self.calls else 0.0


# The four possible outcomes, shared: recording a call allocates nothing.
_OUTCOMES = {(f, s): Outcome(failed=f, slow=s) for f in (False, True) for s in (False, True)}


def _stats(outcomes: deque[Outcome] | list[Outcome]) -> WindowStats:
    return WindowStats(
        calls=len(outcomes),
        failures=sum(o.failed for o in outcomes),
        slow_calls=sum(o.slow for o in outcomes),
    )


class Machine:
    """One breaker's state. Not thread-safe; meant for one event loop."""

    def __init__(
        self,
        name: str,
        policy: Policy,
        clock: Callable[[], float],
        on_transition: Callable[[Transition], None] | None = None,
    ) -> None:
        self.name = name
        self.policy = policy
        self._clock = clock
        self._on_transition = on_transition
        self._state: GuardState = "closed"
        self._window: deque[Outcome] = deque(maxlen=policy.window)
        # Running counts of the window, so a call is judged in O(1), not O(window).
        self._window_failures = 0
        self._window_slow = 0
        self._trials: list[Outcome] = []
        self._trials_in_flight = 0
        self._open_until = 0.0

    # --- reading -----------------------------------------------------------

    @property
    def state(self) -> GuardState:
        """The state now; an open breaker whose time is up reads (and becomes) half-open."""
        if self._state == "open" and self._clock() >= self._open_until:
            self._move("half_open", f"open for {self.policy.open_seconds:g}s")
        return self._state

    def peek(self) -> GuardState:
        """The state now, without moving (for readers that must not cause a transition)."""
        if self._state == "open" and self._clock() >= self._open_until:
            return "half_open"
        return self._state

    def stats(self) -> WindowStats:
        """The window while closed; the trials so far while half-open."""
        if self.state == "half_open":
            return _stats(self._trials)
        return WindowStats(len(self._window), self._window_failures, self._window_slow)

    @property
    def trials_in_flight(self) -> int:
        return self._trials_in_flight

    def retry_after(self) -> float:
        """Seconds until a refused caller may try again (0 when calls are let through)."""
        state = self.state
        if state == "open":
            return max(0.0, self._open_until - self._clock())
        if state == "forced_open":
            return self.policy.open_seconds  # a hint: lasts until an operator resets it
        if state == "half_open" and not self._trial_slot_free():
            return HALF_OPEN_RETRY_AFTER
        return 0.0

    # --- calls -------------------------------------------------------------

    def allow(self) -> bool:
        """May a call go ahead? A True must be followed by `record()` or `release()`."""
        state = self._state
        if state == "closed":
            return True
        state = self.state
        if state in ("closed", "disabled"):
            return True
        if state == "half_open" and self._trial_slot_free():
            self._trials_in_flight += 1
            return True
        return False

    def record(self, ok: bool, seconds: float = 0.0) -> None:
        """The outcome of an allowed call and how long it took."""
        outcome = _OUTCOMES[not ok, seconds > self.policy.slow_call_seconds]
        state = self._state
        if state == "open":
            state = self.state  # it may be half-open by now
        if state == "closed":
            window = self._window
            if len(window) == window.maxlen:  # the oldest outcome leaves the window
                oldest = window[0]
                self._window_failures -= oldest.failed
                self._window_slow -= oldest.slow
            window.append(outcome)
            self._window_failures += outcome.failed
            self._window_slow += outcome.slow
            self._judge_window()
        elif state == "half_open":
            self._trials_in_flight = max(0, self._trials_in_flight - 1)
            self._trials.append(outcome)
            self._judge_trials()

    def release(self) -> None:
        """An allowed call ended without an outcome: free its half-open trial slot."""
        if self.state == "half_open":
            self._trials_in_flight = max(0, self._trials_in_flight - 1)

    def probe_succeeded(self) -> None:
        """The dependency answered a probe made outside the breaker: open -> half-open now.

        Waiting out `open_seconds` would keep refusing a dependency known to be
        back; the trials still decide whether it is back for calls too. Operator
        states are left alone.
        """
        if self.state == "open":
            self._move("half_open", "its probe answered")

    # --- operator ----------------------------------------------------------

    def reset(self) -> None:
        """Closed, with an empty window, whatever the state."""
        self._move("closed", "reset by an operator")

    def force_open(self) -> None:
        """Refuse every call until `reset()`."""
        self._move("forced_open", "forced open by an operator")

    def disable(self) -> None:
        """Let every call through, judging nothing, until `reset()`."""
        self._move("disabled", "disabled by an operator")

    # --- inside ------------------------------------------------------------

    def _trial_slot_free(self) -> bool:
        started = len(self._trials) + self._trials_in_flight
        return started < self.policy.half_open_calls

    def _tripped(self, stats: WindowStats) -> str | None:
        """Why these outcomes open the breaker, or None."""
        p = self.policy
        if stats.failure_rate >= p.failure_rate:
            return f"failure rate {stats.failure_rate:.0f}% >= {p.failure_rate:g}%"
        if stats.slow_call_rate >= p.slow_call_rate:
            return (
                f"slow call rate {stats.slow_call_rate:.0f}% >= {p.slow_call_rate:g}% "
                f"(calls over {p.slow_call_seconds:g}s)"
            )
        return None

    def _judge_window(self) -> None:
        if not (self._window_failures or self._window_slow):
            return  # both rates 0%, and the thresholds are in (0, 100]: the usual case, cheaply
        needed = min(self.policy.minimum_calls, self.policy.window)
        if len(self._window) < needed:
            return  # no judgement before minimum_calls
        stats = WindowStats(len(self._window), self._window_failures, self._window_slow)
        if reason := self._tripped(stats):
            self._move("open", f"{reason} over the last {stats.calls} calls")

    def _judge_trials(self) -> None:
        if len(self._trials) < self.policy.half_open_calls:
            return
        stats = _stats(self._trials)
        if reason := self._tripped(stats):
            self._move("open", f"half-open trials: {reason}")
        else:
            self._move("closed", f"{stats.calls} half-open trials passed")

    def _move(self, to: GuardState, reason: str) -> None:
        source = self._state
        now = self._clock()
        self._state = to
        # Every state starts with fresh counts: a new window when closing, new
        # trials when half-opening (as resilience4j does).
        self._window.clear()
        self._window_failures = self._window_slow = 0
        self._trials.clear()
        self._trials_in_flight = 0
        if to == "open":
            self._open_until = now + self.policy.open_seconds
        if source != to and self._on_transition is not None:
            self._on_transition(Transition(self.name, source, to, reason, now))
