"""CORS: nothing is allowed by default; `[cors] allow_origins` allows exactly those origins."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import TestClient

from app.application import create_app
from tests.support.apps import PROBE, ConfigFactory

WITH_PROBE = f'["metrics", "{PROBE}"]'
ALLOWED = "https://app.example"
EVIL = "https://evil.example"
ALLOW_ORIGIN = "Access-Control-Allow-Origin"


def preflight(origin: str, method: str = "POST", headers: str = "") -> dict[str, str]:
    request = {"Origin": origin, "Access-Control-Request-Method": method}
    if headers:
        request["Access-Control-Request-Headers"] = headers
    return request


def cors_headers(response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.lower().startswith("access-control-")}


@pytest.fixture
async def closed(aiohttp_client, make_config: ConfigFactory) -> TestClient:
    """The default config: no origin allowed."""
    return await aiohttp_client(create_app(make_config(PLUGINS__ENABLED=WITH_PROBE)))


@pytest.fixture
async def open_to_app(aiohttp_client, make_config: ConfigFactory) -> TestClient:
    config = make_config(PLUGINS__ENABLED=WITH_PROBE, CORS__ALLOW_ORIGINS=f'["{ALLOWED}"]')
    return await aiohttp_client(create_app(config))


# --- default: closed -------------------------------------------------------------------


async def test_default_config_allows_no_origin(closed: TestClient) -> None:
    response = await closed.get("/healthz", headers={"Origin": EVIL})
    assert response.status == 200
    assert cors_headers(response) == {}


async def test_default_config_allows_not_even_a_plausible_origin(closed: TestClient) -> None:
    response = await closed.post("/test/echo", json={"a": 1}, headers={"Origin": ALLOWED})
    assert response.status == 200
    assert cors_headers(response) == {}


async def test_default_config_does_not_answer_a_preflight(closed: TestClient) -> None:
    response = await closed.options("/test/echo", headers=preflight(EVIL))
    assert response.status >= 400  # no preflight route: the router refuses OPTIONS
    assert cors_headers(response) == {}
    body = await response.json()
    assert body["error"]["code"] == "method_not_allowed"


# --- an allowed origin -----------------------------------------------------------------


async def test_a_simple_get_from_an_allowed_origin_is_allowed(open_to_app: TestClient) -> None:
    response = await open_to_app.get("/healthz", headers={"Origin": ALLOWED})
    assert response.status == 200
    assert response.headers[ALLOW_ORIGIN] == ALLOWED
    # Credentials are not allowed (allow_credentials = false).
    assert "Access-Control-Allow-Credentials" not in response.headers


async def test_a_request_with_an_allowed_origin_on_a_templated_route(
    open_to_app: TestClient,
) -> None:
    response = await open_to_app.get("/test/items/5", headers={"Origin": ALLOWED})
    assert response.status == 200
    assert response.headers[ALLOW_ORIGIN] == ALLOWED


async def test_a_post_from_an_allowed_origin_is_allowed(open_to_app: TestClient) -> None:
    response = await open_to_app.post("/test/echo", json={"a": 1}, headers={"Origin": ALLOWED})
    assert response.status == 200
    assert response.headers[ALLOW_ORIGIN] == ALLOWED
    assert await response.json() == {"echo": {"a": 1}}


async def test_a_preflight_from_an_allowed_origin_is_allowed(open_to_app: TestClient) -> None:
    response = await open_to_app.options(
        "/test/echo", headers=preflight(ALLOWED, "POST", "Content-Type, X-Request-ID")
    )
    assert response.status == 200
    assert response.headers[ALLOW_ORIGIN] == ALLOWED
    assert "POST" in response.headers["Access-Control-Allow-Methods"]
    allowed_headers = response.headers["Access-Control-Allow-Headers"].lower()
    assert "content-type" in allowed_headers
    assert "x-request-id" in allowed_headers
    assert response.headers["Access-Control-Max-Age"] == "600"


async def test_a_preflight_for_a_method_the_route_lacks_is_refused(
    open_to_app: TestClient,
) -> None:
    response = await open_to_app.options("/test/echo", headers=preflight(ALLOWED, "DELETE"))
    assert response.status == 403
    assert ALLOW_ORIGIN not in response.headers


async def test_the_response_to_an_allowed_origin_carries_the_request_id(
    open_to_app: TestClient,
) -> None:
    response = await open_to_app.options(
        "/test/echo", headers={**preflight(ALLOWED), "X-Request-ID": "preflight-1"}
    )
    assert response.status == 200
    assert response.headers["X-Request-ID"] == "preflight-1"


# --- another origin --------------------------------------------------------------------


async def test_a_simple_get_from_another_origin_gets_no_allow_origin(
    open_to_app: TestClient,
) -> None:
    response = await open_to_app.get("/healthz", headers={"Origin": EVIL})
    assert ALLOW_ORIGIN not in response.headers
    assert cors_headers(response) == {}


async def test_a_preflight_from_another_origin_is_refused(open_to_app: TestClient) -> None:
    response = await open_to_app.options("/test/echo", headers=preflight(EVIL))
    assert response.status == 403
    assert ALLOW_ORIGIN not in response.headers
    assert "Access-Control-Allow-Methods" not in response.headers


async def test_an_origin_differing_only_in_scheme_or_port_is_another_origin(
    open_to_app: TestClient,
) -> None:
    for origin in ("http://app.example", "https://app.example:8443", "https://app.example.evil"):
        response = await open_to_app.options("/test/echo", headers=preflight(origin))
        assert response.status == 403, origin
        assert ALLOW_ORIGIN not in response.headers, origin
