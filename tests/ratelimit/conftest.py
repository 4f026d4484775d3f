"""Apps for the rate-limit tests: the plugin under test plus API-shaped routes."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from aiohttp.test_utils import TestClient

from tests.support.apps import ConfigFactory, StartApp

ROUTES = "tests.ratelimit.routes:RoutesPlugin"

StartClient = Callable[..., Awaitable[TestClient]]


def limited_config(make_config: ConfigFactory, toml: str = "", *, plugins: str = "", **env: str):
    enabled = plugins or f'["metrics", "redis", "ratelimit", "{ROUTES}"]'
    return make_config(toml, PLUGINS__ENABLED=enabled, **env)


@pytest.fixture
def start(start_app: StartApp) -> StartClient:
    """`await start(toml, **env)`: a test client of the real app with the ratelimit plugin."""

    async def make(toml: str = "", **env: str) -> TestClient:
        return await start_app(["metrics", "redis", "ratelimit", ROUTES], toml, **env)

    return make
