"""Operator actions on a breaker (`reset`, `force_open`, `disable`) and what became of one."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from app.core.broadcast import Delivery

Action = Literal["reset", "force_open", "disable"]
ACTIONS: tuple[Action, ...] = ("reset", "force_open", "disable")


@dataclass
class ActionResult:
    """Which instances applied an operator action (see `app.core.broadcast`)."""

    id: str
    action: Action
    breaker: str
    applied: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)  # answered: no such breaker there
    missing: list[str] = field(default_factory=list)  # live, but no answer in time
    error: str = ""  # why the action reached this instance only

    @classmethod
    def of(cls, action: Action, breaker: str, delivery: Delivery) -> ActionResult:
        return cls(
            delivery.id,
            action,
            breaker,
            delivery.applied,
            delivery.unknown,
            delivery.missing,
            delivery.error,
        )

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
