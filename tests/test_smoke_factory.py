"""The factory builds a working app from the default config."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from app.application import create_app
from tests.support.apps import PROBE, ConfigFactory


async def test_default_app_serves_health(aiohttp_client, make_config: ConfigFactory) -> None:
    client: TestClient = await aiohttp_client(create_app(make_config()))
    response = await client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}


async def test_probe_plugin_loads_by_import_path(
    aiohttp_client, make_config: ConfigFactory
) -> None:
    config = make_config(PLUGINS__ENABLED=f'["metrics", "{PROBE}"]')
    client: TestClient = await aiohttp_client(create_app(config))
    response = await client.post("/test/echo", json={"a": 1})
    assert response.status == 200
    assert await response.json() == {"echo": {"a": 1}}
