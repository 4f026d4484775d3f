"""Admin tests: the real app through `create_app`, logged in the way a browser logs in."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp.test_utils import TestClient

from app.application import create_app
from tests.support.apps import ConfigFactory

TOKEN = "operator-token-0123456789"
VIEWER = "viewer-token-9876543210"
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')

StartAdmin = Callable[..., Awaitable[TestClient]]


def admin_env(**env: str) -> dict[str, str]:
    return {"ADMIN__TOKEN": TOKEN, "ADMIN__VIEWER_TOKEN": VIEWER, **env}


async def start_admin(aiohttp_client: Any, make_config: ConfigFactory, **env: str) -> TestClient:
    client: TestClient = await aiohttp_client(create_app(make_config(**admin_env(**env))))
    return client


async def login_form(client: TestClient) -> str:
    """GET the login form (which sets its cookie); the form's CSRF field."""
    response = await client.get("/admin/login")
    assert response.status == 200
    found = CSRF_FIELD.search(await response.text())
    assert found is not None
    return found[1]


async def post_login(
    client: TestClient, token: str, csrf: str | None = None, **headers: str
) -> Any:
    data = {"token": token}
    if csrf is not None:
        data["csrf_token"] = csrf
    return await client.post("/admin/login", data=data, allow_redirects=False, headers=headers)


async def login(client: TestClient, token: str = TOKEN) -> str:
    """Log in as a browser does; the session's CSRF token (from the page's meta tag)."""
    response = await post_login(client, token, await login_form(client))
    assert response.status == 303, await response.text()
    assert response.headers["Location"] == "/admin"
    page = await client.get("/admin")
    assert page.status == 200
    found = CSRF_META.search(await page.text())
    assert found is not None
    return found[1]


# The queue tests' fixtures: a queue of this test's own, on each backend.
from tests.queue.conftest import amqp_url, backend_kind, queue_name  # noqa: E402, F401
