"""Circuit breakers: the pure state machine, the `Breaker`, the registry and operator control."""

from app.breakers.breaker import Breaker
from app.breakers.control import ACTIONS, Action, ActionResult, OperatorControl
from app.breakers.machine import Machine, Policy, Transition, WindowStats
from app.breakers.registry import BreakerRegistry
from app.breakers.settings import BreakerOverride, BreakersSettings

__all__ = [
    "ACTIONS",
    "Action",
    "ActionResult",
    "Breaker",
    "BreakerOverride",
    "BreakerRegistry",
    "BreakersSettings",
    "Machine",
    "OperatorControl",
    "Policy",
    "Transition",
    "WindowStats",
]
