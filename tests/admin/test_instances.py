"""Two instances sharing the machine's Redis (and shards), as behind nginx."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient

from app.breakers import BREAKERS
from app.core.lifecycle import LIFECYCLE
from tests.admin.conftest import login, login_form, post_login, start_admin
from tests.support.apps import ConfigFactory
from tests.support.polling import eventually

Pair = tuple[TestClient, TestClient]


@pytest.fixture
async def pair(
    aiohttp_client: Any, make_config: ConfigFactory, redis_url: str, redis_prefix: str
) -> Pair:
    env = {
        "REDIS__URL": redis_url,
        "REDIS__KEY_PREFIX": redis_prefix,
        "ADMIN__PUSH_INTERVAL": "0.25",
        "ADMIN__LOGIN_LIMIT": '"3/minute"',
    }
    a = await start_admin(aiohttp_client, make_config, **env)
    b = await start_admin(aiohttp_client, make_config, **env)
    return a, b


def instance_id(client: TestClient) -> str:
    return client.app[LIFECYCLE].instance.id


def session_cookie(client: TestClient) -> str:
    cookies = client.session.cookie_jar.filter_cookies(client.make_url("/admin"))
    return cookies["keel_admin_session"].value


def share_session(source: TestClient, target: TestClient) -> None:
    target.session.cookie_jar.clear()
    target.session.cookie_jar.update_cookies({"keel_admin_session": session_cookie(source)})


async def test_each_instance_shows_both(pair: Pair) -> None:
    a, b = pair
    await login(a)
    ids = {instance_id(a), instance_id(b)}

    async def both_listed() -> bool:
        state = await (await a.get("/admin/api/state")).json()
        return {i["id"] for i in state["instances"]} == ids

    await eventually(both_listed, "both instances in A's state")
    state = await (await a.get("/admin/api/state")).json()
    assert state["instances"][0]["id"] == instance_id(a)  # the one answering comes first
    other = state["instances"][1]
    assert other["stale"] is False
    assert other["plugins"]["admin"]["fleet"] == "redis"
    assert "series" in other
    assert state["fleet"] == {"shared": True, "error": "", "stale_after": 5.0, "drop_after": 60.0}


async def test_the_other_instances_traffic_reaches_the_page(pair: Pair) -> None:
    a, b = pair
    await login(a)
    created = await b.post("/api/items", json={"name": "n", "price": 1})
    item = (await created.json())["id"]
    for _ in range(7):
        await b.get(f"/api/items/{item}")

    async def b_points_seen() -> bool:
        state = await (await a.get("/admin/api/state")).json()
        for instance in state["instances"]:
            if instance["id"] == instance_id(b):
                route = instance["series"]["routes"].get("GET /api/items/{id}")
                return route is not None and sum(route["rate"]) == 7
        return False

    await eventually(b_points_seen, "B's requests in A's state")


async def test_a_session_made_on_a_works_on_b_and_a_logout_on_a_ends_it_on_b(pair: Pair) -> None:
    a, b = pair
    csrf = await login(a)
    share_session(a, b)
    assert (await b.get("/admin/api/state")).status == 200
    async with b.ws_connect("/admin/ws") as ws:
        assert (await ws.receive_json(timeout=5))["op"] == "state"
        logout = await a.post("/admin/logout", data={"csrf_token": csrf}, allow_redirects=False)
        assert logout.status == 303
        while (await ws.receive(timeout=5)).type is WSMsgType.TEXT:
            pass
        assert ws.close_code == 1008  # B's socket closed: the session ended everywhere
    assert (await b.get("/admin/api/state")).status == 401


async def test_an_action_from_a_applies_on_b(pair: Pair) -> None:
    a, b = pair
    csrf = await login(a)
    response = await a.post(
        "/admin/api/breakers/shard.1/force_open", headers={"X-CSRF-Token": csrf}
    )
    body = await response.json()
    assert sorted(body["applied"]) == sorted([instance_id(a), instance_id(b)])
    assert body["missing"] == []
    assert b.app[BREAKERS].get("shard.1").state == "forced_open"

    async def b_reports_it() -> bool:
        state = await (await a.get("/admin/api/state")).json()
        for instance in state["instances"]:
            if instance["id"] == instance_id(b):
                breakers = instance["plugins"]["breakers"]["breakers"]
                return any(x["name"] == "shard.1" and x["state"] == "forced_open" for x in breakers)
        return False

    await eventually(b_reports_it, "B's forced-open breaker in A's state")
    state = await (await a.get("/admin/api/state")).json()
    (banner,) = [d for d in state["degraded"] if d["name"] == "shard.1"]
    assert sorted(banner["instances"]) == sorted([instance_id(a), instance_id(b)])
    assert "forced open" in banner["detail"]


async def test_the_login_limit_is_shared(pair: Pair) -> None:
    a, b = pair
    for _ in range(3):
        assert (await post_login(a, "wrong", await login_form(a))).status == 401
    limited = await post_login(b, "wrong", await login_form(b))
    assert limited.status == 429


async def test_the_audit_log_is_shared(pair: Pair) -> None:
    a, b = pair
    await login(a)
    await login(b)
    entries = (await (await b.get("/admin/api/audit")).json())["entries"]
    assert [e["instance"] for e in entries[:2]] == [instance_id(b), instance_id(a)]
