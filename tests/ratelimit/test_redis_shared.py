"""Instances sharing Redis share budgets exactly; a Redis outage degrades, then recovers.

The outage tests pause a private `redis-server` (SIGSTOP): connections stay
open and nothing answers, the way a partition looks to clients.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiohttp.test_utils import TestClient

from app.application import create_app
from app.plugins import PLUGINS
from app.ratelimit import RATELIMITER
from app.redis import REDIS
from tests.ratelimit.conftest import limited_config
from tests.support.apps import ConfigFactory
from tests.support.polling import eventually
from tests.support.private_redis import PrivateRedis


@pytest.fixture
def instances(aiohttp_client, make_config: ConfigFactory):
    """`await instances(n, url, prefix, **env)`: n apps sharing one Redis and key prefix."""

    async def make(n: int, url: str, prefix: str, **env: str) -> list[TestClient]:
        clients = []
        for _ in range(n):
            config = limited_config(
                make_config,
                REDIS__URL=url,
                REDIS__KEY_PREFIX=prefix,
                REDIS__HEARTBEAT_INTERVAL="0.05",
                **env,
            )
            clients.append(await aiohttp_client(create_app(config)))
        return clients

    return make


async def test_two_instances_share_one_budget_exactly(
    instances, redis_url: str, redis_prefix: str
) -> None:
    first, second = await instances(2, redis_url, redis_prefix, RATELIMIT__DEFAULT="5/hour")
    requests = [c.get("/api/things/1") for _ in range(15) for c in (first, second)]
    responses = await asyncio.gather(*requests)
    statuses = sorted(r.status for r in responses)
    assert statuses == [200] * 5 + [429] * 25
    assert first.app[RATELIMITER].backend == "redis"


async def test_headers_count_down_across_instances(
    instances, redis_url: str, redis_prefix: str
) -> None:
    first, second = await instances(2, redis_url, redis_prefix, RATELIMIT__DEFAULT="5/hour")
    assert (await first.get("/api/things/1")).headers["RateLimit-Remaining"] == "4"
    assert (await second.get("/api/things/1")).headers["RateLimit-Remaining"] == "3"
    assert (await first.get("/api/things/1")).headers["RateLimit"] == '"default";r=2;t=2160'


async def both_see_two(clients: list[TestClient]) -> bool:
    return all(c.app[REDIS].live_instances == 2 for c in clients)


async def ratelimit_readiness(client: TestClient) -> dict[str, str]:
    body = await (await client.get("/readyz")).json()
    return body["plugins"]["ratelimit"]


async def test_an_outage_limits_locally_at_the_divided_rate_then_recovers(
    instances, private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="keel.ratelimit")
    clients = await instances(2, private_redis.url, "keel:", RATELIMIT__DEFAULT="10/hour")
    await eventually(lambda: both_see_two(clients), "both instances to see each other")
    client = clients[0]
    assert (await client.get("/api/things/1")).status == 200  # through Redis

    private_redis.pause()
    statuses = [(await client.get("/api/things/1")).status for _ in range(8)]
    # 10/hour shared by 2 live instances: 5 each, counted afresh in-process.
    assert statuses == [200] * 5 + [429] * 3
    limiter = client.app[RATELIMITER]
    assert limiter.degraded
    readiness = await ratelimit_readiness(client)
    assert readiness["status"] == "degraded"
    assert "limit / 2 live instance(s)" in readiness["detail"]
    (plugin_state,) = [p.state() for p in client.app[PLUGINS] if p.name == "ratelimit"]
    assert plugin_state["degraded"] is True
    metrics = await (await client.get("/metrics")).text()
    assert 'keel_ratelimit_decisions_total{result="degraded"} 8.0' in metrics
    warnings = [
        r for r in caplog.records if r.name == "keel.ratelimit" and r.levelno == logging.WARNING
    ]
    assert len(warnings) == 1, "one log line per outage, not one per request"

    private_redis.resume()

    async def recovered() -> bool:
        return (await ratelimit_readiness(client))["status"] == "ok"

    await eventually(recovered, "the limiter to use Redis again")
    assert not limiter.degraded
    # A fresh client now gets the shared quota of 10 again (the local one was 5).
    fresh = await client.get("/api/things/1", headers={"X-Forwarded-For": "203.0.113.50"})
    assert fresh.status == 200
    assert fresh.headers["RateLimit-Remaining"] == "9"
    assert any("answers again" in r.getMessage() for r in caplog.records)


async def test_failing_closed_answers_503_during_an_outage(
    instances, private_redis: PrivateRedis
) -> None:
    (client,) = await instances(
        1, private_redis.url, "keel:", RATELIMIT__DEFAULT="10/hour", RATELIMIT__FAIL_OPEN="false"
    )
    assert (await client.get("/api/things/1")).status == 200
    private_redis.pause()
    for _ in range(3):
        response = await client.get("/api/things/1")
        assert response.status == 503
        assert (await response.json())["error"]["code"] == "unavailable"
        assert int(response.headers["Retry-After"]) >= 1
    assert (await client.get("/healthz")).status == 200  # never limited, never refused
    assert (await ratelimit_readiness(client))["status"] == "down"
    private_redis.resume()

    async def serving() -> bool:
        return (await client.get("/api/things/1")).status == 200

    await eventually(serving, "limited routes to answer again")
