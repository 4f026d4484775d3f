"""The Plugin protocol, the registry of built-in plugins and the loader.

A plugin is one class in one module (or package). The loader resolves the
ordered `plugins.enabled` list — built-in names from `BUILTIN`, or import paths
`package.module:Class` — and validates the whole set before anything runs:
unknown names, duplicates, missing requirements and cycles are refused with a
message that says how to fix them. Plugins are then ordered so that every
plugin comes after what it requires (and after what it optionally uses, when
enabled), keeping the configured order otherwise.

The shape of every plugin (subclass `BasePlugin`, override what you need):

- `name`, `requires` (must be enabled too), `optional` (used when enabled, and
  then set up first), `settings = SettingsOf(MySettings)` (the plugin's config
  section, a frozen dataclass in its library package's `settings.py`; the base
  class loads it into `self.settings`).
- `Plugin(config)`: keep the config; open nothing.
- `setup(app)`: synchronous, in dependency order: build the plugin's objects,
  handing each what it needs through its constructor (what other plugins
  publish is in `app` by now), add routes and middlewares, publish services
  under the `web.AppKey`s its library package exports.
- `lifespan(app)`: one async context manager for the plugin's whole life,
  registered in `app.cleanup_ctx` in dependency order: acquire before `yield`,
  release after it; teardown runs in reverse, every failure reported.
- `drain(app)`: the drain step of shutdown, once the listener has closed and
  before any teardown (close WebSockets, stop taking jobs).
- `state()`: JSON-able live state for the admin dashboard; never a secret.
- `readiness()`: "ok", "degraded" (serving, a dependency is down) or "down"
  (this instance should not get traffic); aggregated by `/readyz`.
- `reload(config)`: on SIGHUP, apply what can change live; one line per change.
- `openapi_paths()`, `openapi_schemas()`: the document's entries for the routes
  `setup` adds; `amend_openapi(document)`: change the finished document (the
  rate limiter adds 429 to what it limits).
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar, overload

from aiohttp import web

from app.config import Config, load_config
from app.core.health import READY, Readiness
from app.errors import PluginError

if TYPE_CHECKING:
    from os import PathLike

    from app.core.config_schema import Problems

__all__ = [
    "BUILTIN",
    "PLUGINS",
    "READY",
    "BasePlugin",
    "Plugin",
    "Readiness",
    "SettingsOf",
    "read_config",
    "resolve",
    "settings_classes",
]

# Built-in plugins by name. Listing them here (not scanning a directory) keeps
# loading explicit: a plugin is loaded because config names it, never because
# a module happened to be imported.
BUILTIN: dict[str, str] = {
    "metrics": "app.plugins.metrics:MetricsPlugin",
    "breakers": "app.plugins.breakers:BreakersPlugin",
    "redis": "app.plugins.redis:RedisPlugin",
    "ratelimit": "app.plugins.ratelimit:RatelimitPlugin",
    "upstreams": "app.plugins.upstreams:UpstreamsPlugin",
    "sharding": "app.plugins.sharding:ShardingPlugin",
    "cache": "app.plugins.cache:CachePlugin",
    "queue": "app.plugins.queue:QueuePlugin",
    "demo": "app.plugins.demo:DemoPlugin",
    "websocket": "app.plugins.websocket:WebSocketPlugin",
    "admin": "app.plugins.admin:AdminPlugin",
}

S = TypeVar("S")


class SettingsOf(Generic[S]):
    """Declares a plugin's config section: `settings = SettingsOf(RedisSettings)`.

    On the class it names the section's dataclass (the loader validates the
    section with it); on an instance it is the section as configured, set by
    `BasePlugin.__init__` (and again by `reload`).
    """

    def __init__(self, kind: type[S]) -> None:
        self.kind = kind

    @overload
    def __get__(self, plugin: None, owner: type[Any]) -> SettingsOf[S]: ...

    @overload
    def __get__(self, plugin: object, owner: type[Any]) -> S: ...

    def __get__(self, plugin: object | None, owner: type[Any]) -> SettingsOf[S] | S:
        if plugin is None:
            return self
        # Not reached once the base class has stored the section on the instance
        # (a non-data descriptor yields to the instance's own attribute).
        raise AttributeError("settings are set by BasePlugin.__init__")


def settings_kind(cls: type[Any]) -> type[Any] | None:
    """The dataclass of a plugin class's config section, or None."""
    declared = getattr(cls, "settings", None)
    return declared.kind if isinstance(declared, SettingsOf) else None


class Plugin(Protocol):
    """What the loader and the application need from a plugin instance (see the module doc)."""

    name: ClassVar[str]
    requires: ClassVar[tuple[str, ...]]
    optional: ClassVar[tuple[str, ...]]

    def __init__(self, config: Config) -> None: ...

    def setup(self, app: web.Application) -> None: ...

    def lifespan(self, app: web.Application) -> AbstractAsyncContextManager[None]: ...

    async def drain(self, app: web.Application) -> None: ...

    def state(self) -> dict[str, Any]: ...

    async def readiness(self) -> Readiness: ...

    def reload(self, config: Config) -> list[str]: ...

    def openapi_paths(self) -> dict[str, Any]: ...

    def openapi_schemas(self) -> dict[str, Any]: ...

    def amend_openapi(self, document: dict[str, Any]) -> None: ...


PLUGINS: web.AppKey[Sequence[Plugin]] = web.AppKey("keel.plugins")


class BasePlugin:
    """Defaults for every optional part of the protocol; subclass and override."""

    name: ClassVar[str] = ""
    requires: ClassVar[tuple[str, ...]] = ()
    optional: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: Config) -> None:
        self.config = config
        self._load_settings(config)

    def _load_settings(self, config: Config) -> None:
        kind = settings_kind(type(self))
        if kind is not None:
            vars(self)["settings"] = config.settings(kind)

    def setup(self, app: web.Application) -> None:
        """Build, add routes and middlewares; publish services under AppKeys."""

    @asynccontextmanager
    async def lifespan(self, app: web.Application) -> AsyncIterator[None]:
        """Acquire resources before the yield and release them after it."""
        yield

    async def drain(self, app: web.Application) -> None:
        """Stop taking new work during shutdown (the listener is closed by now)."""

    def state(self) -> dict[str, Any]:
        return {}

    async def readiness(self) -> Readiness:
        return READY

    def reload(self, config: Config) -> list[str]:
        """Keep the new config (and settings); a plugin that applies changes overrides this."""
        self.config = config
        self._load_settings(config)
        return []

    def openapi_paths(self) -> dict[str, Any]:
        """OpenAPI 3.1 `paths` entries for the routes `setup` adds."""
        return {}

    def openapi_schemas(self) -> dict[str, Any]:
        """Entries for `components.schemas` that the paths refer to."""
        return {}

    def amend_openapi(self, document: dict[str, Any]) -> None:
        """Change the finished document (other plugins' operations included)."""


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


def settings_classes(enabled: Iterable[str], problems: Problems) -> Mapping[str, type[Any]]:
    """Section name -> dataclass, of every built-in plugin and of each enabled import path.

    Passed to `app.config.load_config` (which knows nothing of plugins), so that
    every section is validated in one pass whether or not its plugin is enabled.
    """
    entries = list(BUILTIN) + [e for e in enabled if ":" in e]
    sections: dict[str, type[Any]] = {}
    for entry in entries:
        try:
            cls = _load_class(entry)
        except ValueError as exc:
            problems.add("plugins.enabled", str(exc))
            continue
        kind = settings_kind(cls)
        if kind is not None:
            sections[cls.name] = kind
    return sections


def read_config(
    path: str | PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> Config:
    """`app.config.load_config` with every plugin's section: what `run.py` and tests load."""
    return load_config(path, env, plugin_settings=settings_classes)


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
