"""`/healthz` and `/readyz`: liveness always, readiness by phase and by plugin."""

from __future__ import annotations

import asyncio

from aiohttp.test_utils import TestClient

from app.application import create_app
from app.core import health
from app.core.lifecycle import LIFECYCLE
from app.plugins import PLUGINS, Readiness
from tests.support.apps import PROBE, ConfigFactory
from tests.support.plugins.probe import ProbePlugin


async def make_client(aiohttp_client, make_config: ConfigFactory) -> TestClient:
    config = make_config(PLUGINS__ENABLED=f'["metrics", "{PROBE}"]')
    return await aiohttp_client(create_app(config))


def probe_of(client: TestClient) -> ProbePlugin:
    (probe,) = [p for p in client.app[PLUGINS] if p.name == "probe"]
    assert isinstance(probe, ProbePlugin)
    return probe


async def test_healthz(aiohttp_client, make_config: ConfigFactory) -> None:
    client = await make_client(aiohttp_client, make_config)
    response = await client.get("/healthz")
    assert response.status == 200
    assert await response.json() == {"status": "ok"}


async def test_readyz_lists_each_plugin_when_ready(aiohttp_client, make_config: ConfigFactory):
    client = await make_client(aiohttp_client, make_config)
    response = await client.get("/readyz")
    assert response.status == 200
    body = await response.json()
    assert body["status"] == "ready"
    assert set(body["plugins"]) == {"metrics", "probe"}
    assert body["plugins"]["probe"] == {"status": "ok", "detail": ""}


async def test_a_degraded_plugin_keeps_the_instance_ready(aiohttp_client, make_config):
    client = await make_client(aiohttp_client, make_config)
    probe_of(client).readiness_status = Readiness("degraded", "cache bypassed")
    response = await client.get("/readyz")
    assert response.status == 200
    body = await response.json()
    assert body["status"] == "degraded"
    assert body["plugins"]["probe"] == {"status": "degraded", "detail": "cache bypassed"}


async def test_a_plugin_down_makes_readyz_503_but_healthz_stays_200(aiohttp_client, make_config):
    client = await make_client(aiohttp_client, make_config)
    probe_of(client).readiness_status = Readiness("down", "no shards")
    response = await client.get("/readyz")
    assert response.status == 503
    assert (await response.json())["status"] == "unavailable"
    assert (await client.get("/healthz")).status == 200


async def test_draining_makes_readyz_503(aiohttp_client, make_config: ConfigFactory) -> None:
    client = await make_client(aiohttp_client, make_config)
    client.app[LIFECYCLE].start_draining()
    response = await client.get("/readyz")
    assert response.status == 503
    assert (await response.json())["status"] == "draining"


async def test_a_hanging_check_is_reported_down_within_the_timeout(
    aiohttp_client, make_config: ConfigFactory, monkeypatch
) -> None:
    client = await make_client(aiohttp_client, make_config)
    monkeypatch.setattr(health, "CHECK_TIMEOUT", 0.05)

    async def hang() -> Readiness:
        await asyncio.sleep(60)
        return Readiness()

    monkeypatch.setattr(probe_of(client), "readiness", hang)
    response = await client.get("/readyz")
    assert response.status == 503
    assert "over 0.05s" in (await response.json())["plugins"]["probe"]["detail"]


async def test_readyz_lists_every_shard(aiohttp_client, make_config: ConfigFactory) -> None:
    config = make_config(PLUGINS__ENABLED='["sharding"]')
    client = await aiohttp_client(create_app(config))
    body = await (await client.get("/readyz")).json()
    assert body["plugins"]["sharding"] == {
        "status": "ok",
        "detail": "shard.0: ok; shard.1: ok; shard.2: ok",
    }
