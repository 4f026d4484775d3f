"""The middleware through the real app (in-process backend): headers, 429, exempt routes, rules."""

from __future__ import annotations

import asyncio

from aiohttp import ClientResponse

from app.plugins import PLUGINS
from app.ratelimit import RATELIMITER
from tests.ratelimit.conftest import StartClient

RULES = """
[ratelimit]
default = "3/minute"

[[ratelimit.rules]]
path = "/api/things/{id}"
method = "POST"
limit = "2/hour"
name = "thing-writes"

[[ratelimit.rules]]
path = "/api/any"
method = "DELETE"
limit = "1/day"

[[ratelimit.rules]]
path = "/open"
limit = "1/minute"
"""


def ratelimit_headers(response: ClientResponse) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.lower().startswith("ratelimit")}


async def test_headers_on_an_allowed_request(start: StartClient) -> None:
    client = await start(RATELIMIT__DEFAULT="100/second")
    response = await client.get("/api/things/1")
    assert response.status == 200
    assert ratelimit_headers(response) == {
        "RateLimit-Policy": '"default";q=100;w=1',
        "RateLimit": '"default";r=99;t=1',
        "RateLimit-Limit": "100",
        "RateLimit-Remaining": "99",
        "RateLimit-Reset": "1",
    }


async def test_the_budget_runs_out_into_a_429(start: StartClient) -> None:
    client = await start(RATELIMIT__DEFAULT="3/minute")
    remaining = []
    for _ in range(3):
        response = await client.get("/api/things/1")
        assert response.status == 200
        remaining.append(response.headers["RateLimit-Remaining"])
    assert remaining == ["2", "1", "0"]
    assert response.headers["RateLimit"] == '"default";r=0;t=60'

    refused = await client.get("/api/things/2")  # another path of the same client
    assert refused.status == 429
    assert refused.headers["Retry-After"] == "20"
    assert refused.headers["RateLimit"] == '"default";r=0;t=20'
    assert refused.headers["RateLimit-Remaining"] == "0"
    assert refused.headers["RateLimit-Reset"] == "20"
    assert "X-Request-ID" in refused.headers
    body = await refused.json()
    assert body["error"]["code"] == "rate_limited"
    assert body["error"]["details"] == {"policy": "default", "limit": "3/minute"}


async def test_concurrent_requests_spend_the_budget_exactly(start: StartClient) -> None:
    client = await start(RATELIMIT__DEFAULT="5/hour")
    responses = await asyncio.gather(*(client.get("/api/things/1") for _ in range(20)))
    statuses = sorted(r.status for r in responses)
    assert statuses == [200] * 5 + [429] * 15


async def test_operational_routes_are_never_limited(start: StartClient) -> None:
    client = await start(RATELIMIT__DEFAULT="1/hour")
    for _ in range(3):
        for path in ("/healthz", "/readyz", "/metrics"):
            response = await client.get(path)
            assert response.status == 200, path
            assert not ratelimit_headers(response), path


async def test_routes_outside_api_are_not_limited_by_default(start: StartClient) -> None:
    client = await start(RATELIMIT__DEFAULT="1/hour")
    for _ in range(3):
        response = await client.get("/open")
        assert response.status == 200
        assert not ratelimit_headers(response)


async def test_error_responses_from_the_handler_carry_the_headers(start: StartClient) -> None:
    client = await start(RATELIMIT__DEFAULT="10/minute")
    missing = await client.get("/api/things/missing")  # app.errors.NotFound
    assert missing.status == 404
    assert missing.headers["RateLimit-Remaining"] == "9"
    gone = await client.get("/api/things/gone")  # aiohttp's HTTPGone
    assert gone.status == 410
    assert gone.headers["RateLimit-Remaining"] == "8"
    assert (await gone.json())["error"]["code"] == "error"


async def test_unknown_api_paths_spend_the_default_budget(start: StartClient) -> None:
    client = await start(RATELIMIT__DEFAULT="2/minute")
    assert (await client.get("/api/nowhere")).status == 404
    not_allowed = await client.put("/api/things/1")
    assert not_allowed.status == 405
    assert not_allowed.headers["RateLimit-Remaining"] == "0"
    assert (await client.get("/api/nowhere/else")).status == 429
    unmatched_elsewhere = await client.get("/nowhere")
    assert unmatched_elsewhere.status == 404
    assert not ratelimit_headers(unmatched_elsewhere)


async def test_a_rule_replaces_the_default_on_its_route_and_method(start: StartClient) -> None:
    client = await start(RULES)
    post = await client.post("/api/things/1")
    assert post.headers["RateLimit-Policy"] == '"thing-writes";q=2;w=3600'
    assert post.headers["RateLimit"] == '"thing-writes";r=1;t=1800'
    assert (await client.post("/api/things/2")).status == 200
    assert (await client.post("/api/things/3")).status == 429
    # GET on the same template is still under the default, with its own budget.
    get = await client.get("/api/things/1")
    assert get.status == 200
    assert get.headers["RateLimit-Policy"] == '"default";q=3;w=60'
    assert get.headers["RateLimit-Remaining"] == "2"


async def test_rules_on_a_wildcard_route_go_by_the_request_method(start: StartClient) -> None:
    client = await start(RULES)
    delete = await client.delete("/api/any")
    assert delete.headers["RateLimit-Policy"] == '"DELETE /api/any";q=1;w=86400'
    assert (await client.delete("/api/any")).status == 429
    patch = await client.patch("/api/any")
    assert patch.status == 200
    assert patch.headers["RateLimit-Policy"] == '"default";q=3;w=60'


async def test_a_rule_can_limit_a_route_outside_api(start: StartClient) -> None:
    client = await start(RULES)
    first = await client.get("/open")
    assert first.headers["RateLimit-Policy"] == '"/open";q=1;w=60'
    assert (await client.get("/open")).status == 429


async def test_head_follows_a_get_rule(start: StartClient) -> None:
    toml = '[[ratelimit.rules]]\npath = "/api/things/{id}"\nmethod = "GET"\nlimit = "1/hour"\n'
    client = await start(toml)
    assert (await client.head("/api/things/1")).status == 200
    assert (await client.get("/api/things/1")).status == 429


async def test_the_forwarded_client_is_the_key(start: StartClient) -> None:
    client = await start(RATELIMIT__DEFAULT="1/hour")  # the test client's peer is loopback: trusted
    first = {"X-Forwarded-For": "203.0.113.1"}
    assert (await client.get("/api/things/1", headers=first)).status == 200
    assert (await client.get("/api/things/1", headers=first)).status == 429
    spoofed = {"X-Forwarded-For": "203.0.113.1, 203.0.113.2"}  # right-most counts
    assert (await client.get("/api/things/1", headers=spoofed)).status == 200


async def test_an_untrusted_peer_cannot_escape_by_forging_x_forwarded_for(
    start: StartClient,
) -> None:
    client = await start(RATELIMIT__DEFAULT="1/hour", SERVER__TRUSTED_PROXIES="[]")
    assert (await client.get("/api/things/1", headers={"X-Forwarded-For": "1.1.1.1"})).status == 200
    forged = {"X-Forwarded-For": "2.2.2.2"}
    assert (await client.get("/api/things/1", headers=forged)).status == 429


async def test_an_api_key_header_is_the_key_and_its_absence_falls_back_to_the_address(
    start: StartClient,
) -> None:
    client = await start(RATELIMIT__DEFAULT="1/hour", RATELIMIT__KEY="header:X-API-Key")
    assert (await client.get("/api/things/1", headers={"X-API-Key": "alpha"})).status == 200
    assert (await client.get("/api/things/1", headers={"X-API-Key": "alpha"})).status == 429
    assert (await client.get("/api/things/1", headers={"X-API-Key": "beta"})).status == 200
    assert (await client.get("/api/things/1")).status == 200  # by address
    assert (await client.get("/api/things/1")).status == 429
    recent = client.app[RATELIMITER].recent_limited
    assert [r["key"] for r in recent] == ["key:alph…", "ip:127.0.0.1"]  # API keys masked


async def test_decisions_are_counted_in_metrics(start: StartClient) -> None:
    client = await start(RATELIMIT__DEFAULT="2/hour")
    for _ in range(3):
        await client.get("/api/things/1")
    text = await (await client.get("/metrics")).text()
    assert 'keel_ratelimit_decisions_total{result="allowed"} 2.0' in text
    assert 'keel_ratelimit_decisions_total{result="limited"} 1.0' in text
    assert 'keel_ratelimit_decisions_total{result="degraded"} 0.0' in text
    assert 'keel_http_requests_total{method="GET",route="/api/things/{id}",status="429"}' in text


async def test_state_and_readiness_without_redis(start: StartClient) -> None:
    client = await start(RULES)
    await client.post("/api/things/1")
    ready = await (await client.get("/readyz")).json()
    assert ready["plugins"]["ratelimit"] == {"status": "ok", "detail": "backend: memory"}
    (plugin,) = [p for p in client.app[PLUGINS] if p.name == "ratelimit"]
    state = plugin.state()
    assert state["backend"] == "memory"
    assert state["degraded"] is False
    assert state["default"] == "3/minute"
    rule = {"path": "/api/things/{id}", "method": "POST", "limit": "2/hour", "name": "thing-writes"}
    assert rule in state["rules"]


async def test_openapi_documents_429_on_limited_operations(start: StartClient) -> None:
    client = await start(RATELIMIT__FAIL_OPEN="false")
    document = await (await client.get("/api/openapi.json")).json()
    openapi_op = document["paths"]["/api/openapi.json"]["get"]["responses"]
    assert "429" in openapi_op
    assert "503" in openapi_op
    assert "429" not in document["paths"]["/healthz"]["get"]["responses"]
