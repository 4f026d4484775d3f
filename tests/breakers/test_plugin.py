"""The breakers plugin in the real app: wiring to redis and shards, metrics, readiness."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from app.application import create_app
from app.breakers import BREAKERS
from app.plugins import PLUGINS
from app.redis import REDIS
from app.sharding import SHARDS
from tests.support.apps import ConfigFactory

VALID_ID = "0123456789abcdef0123456789abcdef"


async def start(aiohttp_client: Any, make_config: ConfigFactory, **env: str) -> TestClient:
    return await aiohttp_client(create_app(make_config(**env)))  # type: ignore[no-any-return]


async def test_the_redis_plugin_uses_the_redis_breaker(
    aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    client = await start(
        aiohttp_client,
        make_config,
        PLUGINS__ENABLED='["redis", "breakers"]',  # listed second: still set up before redis
        **{"BREAKERS__REDIS__OPEN_SECONDS": "3"},
    )
    breaker = client.app[REDIS].guard
    assert breaker is client.app[BREAKERS].get("redis")
    assert breaker.retry_after() == 0
    assert client.app[BREAKERS].get("redis").machine.policy.open_seconds == 3


async def test_each_shard_goes_through_its_breaker(
    aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    client = await start(
        aiohttp_client, make_config, PLUGINS__ENABLED='["metrics", "sharding", "breakers"]'
    )
    breakers = client.app[BREAKERS]
    shards = client.app[SHARDS]
    assert [s.breaker for s in shards] == [breakers.get(f"shard.{n}") for n in range(3)]

    shard = shards.for_key(VALID_ID)
    assert (await client.get(f"/api/items/{VALID_ID}")).status == 404
    assert shard.breaker is not None
    assert shard.breaker.stats().calls >= 1  # the read was reported to it

    result = await breakers.force_open(shard.name)
    assert result.applied == [client.app[BREAKERS].broadcast.instance_id]
    response = await client.get(f"/api/items/{VALID_ID}")
    assert response.status == 503
    body = await response.json()
    assert body["error"]["details"] == {"shard": shard.name}
    assert int(response.headers["Retry-After"]) >= 1

    readiness = await (await client.get("/readyz")).json()
    assert readiness["plugins"]["breakers"] == {
        "status": "degraded",
        "detail": f"{shard.name}: forced_open",
    }
    text = await (await client.get("/metrics")).text()
    assert f'keel_breaker_state{{breaker="{shard.name}"}} 2.0' in text
    assert f'keel_breaker_transitions_total{{breaker="{shard.name}",to="forced_open"}} 1.0' in text

    await breakers.reset(shard.name)
    assert (await client.get(f"/api/items/{VALID_ID}")).status == 404


async def test_the_health_probe_reaches_a_shard_whose_breaker_refuses(
    aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    client = await start(aiohttp_client, make_config, PLUGINS__ENABLED='["sharding", "breakers"]')
    shard = next(iter(client.app[SHARDS]))
    await client.app[BREAKERS].force_open(shard.name)
    await shard.ping()  # no refusal, and nothing reported to the breaker
    assert shard.breaker is not None
    assert shard.breaker.state == "forced_open"


async def test_state_lists_breakers_with_their_window(
    aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    client = await start(aiohttp_client, make_config, PLUGINS__ENABLED='["breakers", "redis"]')
    plugin = next(p for p in client.app[PLUGINS] if p.name == "breakers")
    state = plugin.state()
    assert state["cross_instance"] is False  # no [redis] url
    snapshot = state["breakers"]
    assert [b["name"] for b in snapshot] == ["redis"]
    assert snapshot[0]["state"] == "closed"
    assert snapshot[0]["policy"]["window"] == 20
    assert {"calls", "failures", "slow_calls", "failure_rate", "slow_call_rate"} <= set(snapshot[0])
