"""`create_app(config)`: the one composition root.

Builds the application — core middlewares, the plugins in dependency order,
health, readiness, OpenAPI — and registers each plugin's lifetime in
`app.cleanup_ctx`. Opens nothing itself: connections are opened when the
application starts, by the plugins that own them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Literal

import aiohttp_cors
from aiohttp import web

from app.config import Config
from app.core import health, openapi
from app.core.broadcast import BROADCAST, Broadcast
from app.core.client_address import CLIENT_ADDRESSES, ClientAddressResolver
from app.core.lifecycle import LIFECYCLE, Lifecycle, Phase
from app.core.logging_config import set_level
from app.core.request_context import (
    REQUEST_OBSERVERS,
    RequestObserver,
    request_middleware,
    response_groundwork,
)
from app.core.request_id import RequestIds
from app.errors import TeardownError
from app.plugins import PLUGINS, Plugin, resolve

log = logging.getLogger("keel.app")

Role = Literal["serve", "worker"]


class LiveConfig:
    """The configuration in force: replaced on SIGHUP by `apply_reload`."""

    def __init__(self, config: Config) -> None:
        self.current = config


CONFIG = web.AppKey("keel.config", LiveConfig)


def _plugin_lifespan(
    plugin: Plugin,
) -> Callable[[web.Application], AbstractAsyncContextManager[None]]:
    """Wrap a plugin's lifespan with timing logs and a teardown error naming the plugin."""

    @asynccontextmanager
    async def lifespan(app: web.Application) -> AsyncIterator[None]:
        started = time.perf_counter()
        manager = plugin.lifespan(app)
        await manager.__aenter__()
        log.debug(
            "plugin %s started in %.0f ms", plugin.name, (time.perf_counter() - started) * 1e3
        )
        try:
            yield
        finally:
            try:
                await manager.__aexit__(None, None, None)
            except Exception as exc:
                raise TeardownError(f"plugin {plugin.name}: teardown failed: {exc!r}") from exc
            log.debug("plugin %s stopped", plugin.name)

    return lifespan


def _drain(plugins: Sequence[Plugin]) -> Callable[[web.Application], Awaitable[None]]:
    """Shutdown's drain step (the listener is closed): every plugin's `drain`, in reverse
    dependency order, as teardown runs; one that fails is logged and the others still run."""

    async def drain(app: web.Application) -> None:
        for plugin in reversed(plugins):
            try:
                await plugin.drain(app)
            except Exception:
                log.exception("plugin %s: drain failed", plugin.name)

    return drain


async def _running(app: web.Application) -> AsyncIterator[None]:
    """Last in `cleanup_ctx`: the phase is RUNNING only once every plugin has started."""
    lifecycle = app[LIFECYCLE]
    lifecycle.phase = Phase.RUNNING
    yield
    lifecycle.phase = Phase.STOPPED


def _setup_cors(app: web.Application, origins: tuple[str, ...]) -> None:
    if not origins:
        return  # nothing allowed by default: no CORS headers, no preflight routes
    options = aiohttp_cors.ResourceOptions(  # type: ignore[no-untyped-call]
        allow_credentials=False, expose_headers="*", allow_headers="*", max_age=600
    )
    cors = aiohttp_cors.setup(app, defaults=dict.fromkeys(origins, options))
    for route in list(app.router.routes()):
        cors.add(route)


def create_app(config: Config, *, role: Role = "serve") -> web.Application:
    """The application for `config`. Raises `PluginError` for a bad plugin set.

    `role="worker"` builds the worker's app: plugins load the same way, but only
    the operational endpoints (`/healthz`, `/readyz`, `/metrics`) are public.
    """
    plugin_classes = resolve(config.plugins.enabled)
    plugins: tuple[Plugin, ...] = tuple(cls(config) for cls in plugin_classes)

    lifecycle = Lifecycle(role)
    addresses = ClientAddressResolver(config.server.trusted_proxies)
    observers: list[RequestObserver] = []
    app = web.Application(
        client_max_size=config.server.client_max_size,
        middlewares=[request_middleware(RequestIds(), addresses, lifecycle, observers)],
        handler_args={"max_field_size": 16 * 1024},
    )
    app[REQUEST_OBSERVERS] = observers
    app[CONFIG] = LiveConfig(config)
    app[LIFECYCLE] = lifecycle
    app[CLIENT_ADDRESSES] = addresses
    app[BROADCAST] = Broadcast(lifecycle.instance.id)
    app[PLUGINS] = plugins
    app.on_response_prepare.append(response_groundwork(lifecycle))

    health.add_routes(app, plugins)
    for plugin in plugins:
        plugin.setup(app)
        app.cleanup_ctx.append(_plugin_lifespan(plugin))
    app.cleanup_ctx.append(_running)
    app.on_shutdown.append(_drain(plugins))
    if role == "serve":
        openapi.add_routes(app, plugins)
        _setup_cors(app, config.cors.allow_origins)
    return app


def apply_reload(app: web.Application, new: Config) -> list[str]:
    """Apply what can change without a restart; return one line per change."""
    live = app[CONFIG]
    old = live.current
    changes: list[str] = []
    if new.logging.level != old.logging.level:
        set_level(new.logging.level)
        changes.append(f"logging.level: {old.logging.level} -> {new.logging.level}")
    for plugin in app[PLUGINS]:
        changes.extend(plugin.reload(new))
    live.current = new
    return changes
