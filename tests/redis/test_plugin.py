"""The redis plugin against the machine's Redis: shared client, heartbeat, outage."""

from __future__ import annotations

import redis.asyncio as aioredis
from aiohttp import web

from app.application import create_app
from app.breakers import BREAKERS
from app.redis import REDIS
from tests.support.apps import ConfigFactory
from tests.support.polling import eventually
from tests.support.private_redis import PrivateRedis
from tests.support.services import free_port


def redis_config(make_config: ConfigFactory, url: str, prefix: str, **env: str):
    settings = {
        "PLUGINS__ENABLED": '["metrics", "redis"]',  # what this file tests, nothing else
        "REDIS__URL": url,
        "REDIS__KEY_PREFIX": prefix,
        "REDIS__HEARTBEAT_INTERVAL": "0.05",
    }
    return make_config(**{**settings, **env})


async def started(app: web.Application) -> web.AppRunner:
    runner = web.AppRunner(app)
    await runner.setup()
    return runner


async def test_without_url_there_is_no_client(make_config: ConfigFactory, aiohttp_client) -> None:
    client = await aiohttp_client(create_app(make_config()))
    service = client.app[REDIS]
    assert service.client is None
    assert not service.enabled
    assert (await (await client.get("/readyz")).json())["plugins"]["redis"]["status"] == "ok"


async def test_heartbeat_counts_live_instances_and_leaves_on_shutdown(
    make_config: ConfigFactory, redis_url: str, redis_prefix: str
) -> None:
    first = create_app(redis_config(make_config, redis_url, redis_prefix))
    second = create_app(redis_config(make_config, redis_url, redis_prefix))
    runners = [await started(first), await started(second)]
    probe = aioredis.Redis.from_url(redis_url)
    try:
        await eventually(lambda: first[REDIS].live_instances == 2)
        await eventually(lambda: second[REDIS].live_instances == 2)
        members = await probe.zrange(f"{redis_prefix}instances", 0, -1)
        assert len(members) == 2
        await runners.pop().cleanup()
        assert await probe.zcard(f"{redis_prefix}instances") == 1
        await eventually(lambda: first[REDIS].live_instances == 1)
    finally:
        await probe.aclose()
        for runner in runners:
            await runner.cleanup()


async def test_plugins_share_one_client_under_the_prefix(
    make_config: ConfigFactory, redis_url: str, redis_prefix: str
) -> None:
    app = create_app(redis_config(make_config, redis_url, redis_prefix))
    runner = await started(app)
    try:
        service = app[REDIS]
        assert service.client is not None
        await service.client.set(service.key("probe"), b"1")
        assert await service.client.get(f"{redis_prefix}probe") == b"1"
    finally:
        await runner.cleanup()
    assert app[REDIS].client is None


async def test_unreachable_redis_degrades_readiness_but_the_app_serves(
    make_config: ConfigFactory, aiohttp_client, redis_prefix: str
) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    client = await aiohttp_client(create_app(redis_config(make_config, dead, redis_prefix)))
    assert (await client.get("/healthz")).status == 200
    response = await client.get("/readyz")
    assert response.status == 200
    body = await response.json()
    assert body["status"] == "degraded"
    assert body["plugins"]["redis"]["status"] == "degraded"
    service = client.app[REDIS]
    assert service.live_instances == 1
    assert service.last_error


async def test_the_heartbeat_lets_redis_calls_through_once_redis_answers_again(
    make_config: ConfigFactory, aiohttp_client, private_redis: PrivateRedis, redis_prefix: str
) -> None:
    """The heartbeat is the `redis` breaker's probe: it PINGs while the breaker refuses,
    so Redis users are back within a heartbeat of Redis, not after the open time."""
    config = redis_config(
        make_config,
        private_redis.url,
        redis_prefix,
        PLUGINS__ENABLED='["metrics", "redis", "breakers"]',
        BREAKERS__REDIS__MINIMUM_CALLS="2",
        BREAKERS__REDIS__OPEN_SECONDS="60",
    )
    client = await aiohttp_client(create_app(config))
    breaker = client.app[BREAKERS].get("redis")
    private_redis.pause()
    await eventually(lambda: breaker.state == "open", "the redis breaker to open")
    assert breaker.retry_after() > 30
    private_redis.resume()
    await eventually(lambda: breaker.state == "closed", "the redis breaker to close", timeout=15)
    assert client.app[REDIS].outage.active is False
