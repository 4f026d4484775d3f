"""Circuit breakers: the pure state machine, the `Breaker`, the registry (`app[BREAKERS]`) and
operator actions."""

from app.breakers.actions import ACTIONS, Action, ActionResult
from app.breakers.breaker import Breaker
from app.breakers.machine import Machine, Policy, Transition, WindowStats
from app.breakers.registry import BREAKERS, BreakerRegistry
from app.breakers.settings import BreakerOverride, BreakersSettings

__all__ = [
    "ACTIONS",
    "BREAKERS",
    "Action",
    "ActionResult",
    "Breaker",
    "BreakerOverride",
    "BreakerRegistry",
    "BreakersSettings",
    "Machine",
    "Policy",
    "Transition",
    "WindowStats",
]
