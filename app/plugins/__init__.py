"""The Plugin protocol, the registry of built-in plugins and the loader.

A plugin is one class in one module (or package). The loader resolves the
ordered `plugins.enabled` list — built-in names from `BUILTIN`, or import paths
`package.module:Class` — and validates the whole set before anything runs:
unknown names, duplicates, missing requirements and cycles are refused with a
message that says how to fix them. Plugins are then ordered so that every
plugin comes after what it requires (and after what it optionally uses, when
enabled), keeping the configured order otherwise.

Lifecycle, driven by `create_app`:

1. `Plugin(config)` — read the plugin's section; open nothing.
2. `setup(app)` — synchronous: add routes and middlewares, publish the plugin's
   services under its own `web.AppKey`s. Runs in dependency order.
3. `lifespan(app)` — one async context manager for the plugin's whole life,
   registered in `app.cleanup_ctx` in dependency order: acquire before `yield`,
   release after it; teardown runs in reverse, every failure reported.
4. `state()` — JSON-able live state for the admin dashboard.
5. `readiness()` — "ok", "degraded" (serving, a dependency is down) or
   "down" (this instance should not get traffic); aggregated by `/readyz`.
6. `reload(config)` — on SIGHUP: apply what can change live; return a line
   per change made.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, runtime_checkable

from aiohttp import web

from app.errors import PluginError

if TYPE_CHECKING:
    from app.config import Config
    from app.core.config_schema import Problems

# Built-in plugins by name. Listing them here (not scanning a directory) keeps
# loading explicit: a plugin is loaded because config names it, never because
# a module happened to be imported.
BUILTIN: dict[str, str] = {
    "metrics": "app.plugins.metrics:MetricsPlugin",
    "ratelimit": "app.plugins.ratelimit:RatelimitPlugin",
    "redis": "app.plugins.redis:RedisPlugin",
    "breakers": "app.plugins.breakers:BreakersPlugin",
    "upstreams": "app.plugins.upstreams:UpstreamsPlugin",
    "sharding": "app.plugins.sharding:ShardingPlugin",
    "cache": "app.plugins.cache:CachePlugin",
    "queue": "app.plugins.queue:QueuePlugin",
    "demo": "app.plugins.demo:DemoPlugin",
    "websocket": "app.plugins.websocket:WebSocketPlugin",
}

ReadinessStatus = Literal["ok", "degraded", "down"]


@dataclass(frozen=True, slots=True)
class Readiness:
    """A plugin's answer to "may this instance take traffic?"."""

    status: ReadinessStatus = "ok"
    detail: str = ""


READY = Readiness()


@runtime_checkable
class Plugin(Protocol):
    """What the loader needs from a plugin class and its instances."""

    name: ClassVar[str]
    requires: ClassVar[tuple[str, ...]]
    optional: ClassVar[tuple[str, ...]]
    settings: ClassVar[type[Any] | None]

    def __init__(self, config: Config) -> None: ...

    def setup(self, app: web.Application) -> None: ...

    def lifespan(self, app: web.Application) -> AbstractAsyncContextManager[None]: ...

    def state(self) -> dict[str, Any]: ...

    async def readiness(self) -> Readiness: ...

    def reload(self, config: Config) -> list[str]: ...

    def openapi_paths(self) -> dict[str, Any]: ...

    def openapi_schemas(self) -> dict[str, Any]: ...


class BasePlugin:
    """Defaults for every optional part of the protocol; subclass and override.

    `name` is the plugin's name in `plugins.enabled` and its config section
    (when `settings` is a dataclass). `requires` must be enabled too;
    `optional` is used when enabled and then set up first.
    """

    name: ClassVar[str] = ""
    requires: ClassVar[tuple[str, ...]] = ()
    optional: ClassVar[tuple[str, ...]] = ()
    settings: ClassVar[type[Any] | None] = None

    def __init__(self, config: Config) -> None:
        self.config = config

    def setup(self, app: web.Application) -> None:
        """Add routes and middlewares; publish services under AppKeys."""

    @asynccontextmanager
    async def lifespan(self, app: web.Application) -> AsyncIterator[None]:
        """Acquire resources before the yield and release them after it."""
        yield

    def state(self) -> dict[str, Any]:
        return {}

    async def readiness(self) -> Readiness:
        return READY

    def reload(self, config: Config) -> list[str]:
        self.config = config
        return []

    def openapi_paths(self) -> dict[str, Any]:
        """OpenAPI 3.1 `paths` entries for the routes `setup` adds."""
        return {}

    def openapi_schemas(self) -> dict[str, Any]:
        """Entries for `components.schemas` that the paths refer to."""
        return {}


def _import_class(spec: str) -> type[Any]:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError('expected "package.module:Class"')
    module = importlib.import_module(module_name)
    try:
        return getattr(module, attr)  # type: ignore[no-any-return]
    except AttributeError:
        raise ValueError(f"module {module_name!r} has no attribute {attr!r}") from None


def _load_class(entry: str) -> type[Any]:
    """The plugin class for one `plugins.enabled` entry; ValueError says why not."""
    if ":" not in entry:
        if entry not in BUILTIN:
            known = ", ".join(sorted(BUILTIN))
            raise ValueError(
                f'unknown plugin "{entry}": use a built-in name ({known}) '
                'or an import path "package.module:Class"'
            )
        entry = BUILTIN[entry]
    try:
        cls = _import_class(entry)
    except (ImportError, ValueError) as exc:
        raise ValueError(f'cannot load plugin "{entry}": {exc}') from None
    missing = [a for a in ("name", "setup", "lifespan") if not getattr(cls, a, None)]
    if not isinstance(cls, type) or missing:
        raise ValueError(f'"{entry}" is not a plugin class (missing: {", ".join(missing)})')
    return cls


def plugin_settings(enabled: Iterable[str], problems: Problems) -> list[tuple[str, type[Any]]]:
    """(section name, dataclass) of every built-in plugin and of each enabled import path."""
    entries = list(BUILTIN) + [e for e in enabled if ":" in e]
    sections: list[tuple[str, type[Any]]] = []
    for entry in entries:
        try:
            cls = _load_class(entry)
        except ValueError as exc:
            problems.add("plugins.enabled", str(exc))
            continue
        if cls.settings is not None:
            sections.append((cls.name, cls.settings))
    return sections


def resolve(enabled: Sequence[str]) -> list[type[Any]]:
    """Validate `plugins.enabled` and return the plugin classes in dependency order.

    Raises `PluginError` with every problem found.
    """
    problems: list[str] = []
    classes: dict[str, type[Any]] = {}
    for entry in enabled:
        try:
            cls = _load_class(entry)
        except ValueError as exc:
            problems.append(f"plugins.enabled: {exc}")
            continue
        if cls.name in classes:
            problems.append(
                f'plugins.enabled: plugin "{cls.name}" is listed twice ("{entry}"): list it once'
            )
            continue
        classes[cls.name] = cls
    for name, cls in classes.items():
        for required in cls.requires:
            if required not in classes:
                problems.append(
                    f'plugins.enabled: "{name}" requires "{required}": '
                    f'add "{required}" to plugins.enabled'
                )
    if problems:
        raise PluginError(problems)
    return _dependency_order(classes)


def _dependency_order(classes: dict[str, type[Any]]) -> list[type[Any]]:
    """Order by requirements (and enabled optional uses), stable in configured order."""
    order: list[type[Any]] = []
    done: set[str] = set()
    visiting: list[str] = []

    def visit(name: str) -> None:
        if name in done:
            return
        if name in visiting:
            cycle = " -> ".join([*visiting[visiting.index(name) :], name])
            raise PluginError(
                [f"plugins.enabled: requirement cycle {cycle}: remove one of these requirements"]
            )
        visiting.append(name)
        cls = classes[name]
        for dep in (*cls.requires, *cls.optional):
            if dep in classes:
                visit(dep)
        visiting.pop()
        done.add(name)
        order.append(cls)

    for name in classes:
        visit(name)
    return order
