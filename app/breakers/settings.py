"""`[breakers]`: the defaults of every breaker, and `[breakers.<name>]` overrides."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from app.breakers.machine import Policy
from app.core.config_schema import check, positive, rest_of_table


def percent(value: float) -> str | None:
    """Validator: a percentage in (0, 100]."""
    return None if 0 < value <= 100 else f"expected a percentage in (0, 100], got {value}"


def _percent(value: float | None) -> str | None:
    return None if value is None else percent(value)


def _positive(value: float | None) -> str | None:
    return None if value is None else positive(value)


@dataclass(frozen=True)
class BreakerOverride:
    """`[breakers.<name>]`: any of `[breakers]`'s keys, for one breaker."""

    failure_rate: float | None = field(default=None, metadata=check(_percent))
    minimum_calls: int | None = field(default=None, metadata=check(_positive))
    window: int | None = field(default=None, metadata=check(_positive))
    open_seconds: float | None = field(default=None, metadata=check(_positive))
    half_open_calls: int | None = field(default=None, metadata=check(_positive))
    slow_call_seconds: float | None = field(default=None, metadata=check(_positive))
    slow_call_rate: float | None = field(default=None, metadata=check(_percent))


@dataclass(frozen=True)
class BreakersSettings:
    """`[breakers]` — see `app.breakers.machine` for the semantics of each key.

    `failure_rate`, `slow_call_rate`: percentages that open the breaker;
    `minimum_calls`: calls in the window before any judgement; `window`: how
    many recent calls are judged; `open_seconds`: how long it stays open;
    `half_open_calls`: trial calls let through when half-open;
    `slow_call_seconds`: a call slower than this is slow.
    """

    failure_rate: float = field(default=50.0, metadata=check(percent))
    minimum_calls: int = field(default=10, metadata=check(positive))
    window: int = field(default=20, metadata=check(positive))
    open_seconds: float = field(default=10.0, metadata=check(positive))
    half_open_calls: int = field(default=3, metadata=check(positive))
    slow_call_seconds: float = field(default=5.0, metadata=check(positive))
    slow_call_rate: float = field(default=100.0, metadata=check(percent))
    # `[breakers."shard.0"]`, `[breakers.redis]`: quote names that hold a dot.
    overrides: Mapping[str, BreakerOverride] = field(
        default_factory=lambda: MappingProxyType({}), metadata=rest_of_table()
    )

    def policy(self, name: str) -> Policy:
        """The policy of breaker `name`: the defaults, then its override's keys."""
        values: dict[str, Any] = {f.name: getattr(self, f.name) for f in dataclasses.fields(Policy)}
        override = self.overrides.get(name)
        if override is not None:
            values.update({k: v for k, v in dataclasses.asdict(override).items() if v is not None})
        return Policy(**values)
