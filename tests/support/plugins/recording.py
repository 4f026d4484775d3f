"""Plugins that record their lifecycle into `app[EVENTS]`, for loader and lifecycle tests.

`Base` <- `NeedsBase` (requires base) <- `NeedsBoth`; `UsesBase` optionally
uses base; `FailsStartup` raises on entry; `FailsTeardown*` raise on exit;
`CycleA` and `CycleB` require each other; `NeedsMissing` requires a plugin
that does not exist.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from app.plugins import BasePlugin

EVENTS = web.AppKey("tests.events", list)


class _Recording(BasePlugin):
    def setup(self, app: web.Application) -> None:
        self.events: list[str] = app.setdefault(EVENTS, [])
        self.events.append(f"setup {self.name}")

    @asynccontextmanager
    async def lifespan(self, app: web.Application) -> AsyncIterator[None]:
        self.events.append(f"start {self.name}")
        yield
        self.events.append(f"stop {self.name}")


class Base(_Recording):
    name = "base"


class NeedsBase(_Recording):
    name = "needs_base"
    requires = ("base",)


class NeedsBoth(_Recording):
    name = "needs_both"
    requires = ("needs_base", "base")


class UsesBase(_Recording):
    name = "uses_base"
    optional = ("base",)


class FailsStartup(_Recording):
    name = "fails_startup"

    @asynccontextmanager
    async def lifespan(self, app: web.Application) -> AsyncIterator[None]:
        self.events.append(f"start {self.name}")
        raise RuntimeError("cannot start")
        yield  # pragma: no cover


class FailsTeardownOne(_Recording):
    name = "fails_teardown_one"

    @asynccontextmanager
    async def lifespan(self, app: web.Application) -> AsyncIterator[None]:
        self.events.append(f"start {self.name}")
        yield
        self.events.append(f"stop {self.name}")
        raise RuntimeError("teardown one broke")


class FailsTeardownTwo(FailsTeardownOne):
    name = "fails_teardown_two"

    @asynccontextmanager
    async def lifespan(self, app: web.Application) -> AsyncIterator[None]:
        self.events.append(f"start {self.name}")
        yield
        self.events.append(f"stop {self.name}")
        raise ValueError("teardown two broke")


class CycleA(_Recording):
    name = "cycle_a"
    requires = ("cycle_b",)


class CycleB(_Recording):
    name = "cycle_b"
    requires = ("cycle_a",)


class NeedsMissing(_Recording):
    name = "needs_missing"
    requires = ("queue",)


class NotAPlugin:
    """Has none of the plugin attributes."""
