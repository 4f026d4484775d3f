"""The OpenAPI document is valid 3.1 and matches the router in both directions."""

from __future__ import annotations

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from openapi_spec_validator import validate

from app.application import create_app
from app.config import DEFAULT_PLUGINS
from app.plugins import BUILTIN
from tests.support.apps import PROBE, ConfigFactory

# HEAD is added by aiohttp next to every GET; OPTIONS only by CORS preflight.
IMPLICIT_METHODS = {"HEAD", "OPTIONS"}


def routes_of(app: web.Application) -> set[tuple[str, str]]:
    return {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method not in IMPLICIT_METHODS
    }


HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def documented(document: dict) -> set[tuple[str, str]]:
    """Operations in `paths`, and WebSocket endpoints (a GET handshake) in `x-websockets`."""
    return {
        (method, path)
        for path, item in document["paths"].items()
        for method in item
        if method in HTTP_METHODS
    } | {("get", path) for path in document.get("x-websockets", {})}


@pytest.mark.parametrize(
    "plugins",
    [list(DEFAULT_PLUGINS), sorted(BUILTIN), [*DEFAULT_PLUGINS, PROBE]],
    ids=["default", "all-builtin", "with-import-path-plugin"],
)
async def test_document_matches_router(aiohttp_client, make_config: ConfigFactory, plugins) -> None:
    enabled = "[" + ", ".join(f'"{p}"' for p in plugins) + "]"
    client: TestClient = await aiohttp_client(create_app(make_config(PLUGINS__ENABLED=enabled)))
    response = await client.get("/api/openapi.json")
    assert response.status == 200
    document = await response.json()
    validate(document)
    assert document["openapi"].startswith("3.1")
    router = routes_of(client.app)
    assert router - documented(document) == set(), "routes missing from the OpenAPI document"
    assert documented(document) - router == set(), "documented paths with no route"


async def test_cors_preflight_routes_are_not_api_routes(aiohttp_client, make_config) -> None:
    config = make_config(CORS__ALLOW_ORIGINS='["https://app.example"]')
    client: TestClient = await aiohttp_client(create_app(config))
    document = await (await client.get("/api/openapi.json")).json()
    assert routes_of(client.app) == documented(document)
