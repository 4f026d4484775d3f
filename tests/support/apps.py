"""The shapes of the app fixtures (`make_config`, `start_app`), and a plugin by name."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from app.config import Config
from app.plugins import PLUGINS

PROBE = "tests.support.plugins.probe:ProbePlugin"

# `make_config(toml_text, **env)` (env keys without the KEEL_ prefix).
ConfigFactory = Callable[..., Config]
# `await start_app(plugins, toml="", **env)`: a test client of the real app.
StartApp = Callable[..., Awaitable[TestClient]]


def plugin_of(app: web.Application, name: str) -> Any:
    """The running plugin instance called `name`."""
    (plugin,) = [p for p in app[PLUGINS] if p.name == name]
    return plugin
