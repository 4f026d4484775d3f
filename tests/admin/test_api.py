"""The admin endpoints of DESIGN.md § Admin: statuses, roles, CSRF, cookies, headers."""

from __future__ import annotations

import asyncio
import json
from http.cookies import SimpleCookie
from typing import Any

import pytest
from aiohttp import WSMsgType, WSServerHandshakeError
from aiohttp.test_utils import TestClient

from app.breakers import BREAKERS
from app.core.lifecycle import LIFECYCLE
from tests.admin.conftest import (
    TOKEN,
    VIEWER,
    login,
    login_form,
    post_login,
    start_admin,
)
from tests.support.apps import ConfigFactory

API_GETS = ("/admin/api/state", "/admin/api/jobs/dead", "/admin/api/audit")
ACTIONS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("/admin/api/breakers/redis/force_open", {}),
    ("/admin/api/jobs/dead/requeue", {"all": True}),
    ("/admin/api/jobs/dead/purge", {"ids": ["x"]}),
)


@pytest.fixture
async def client(aiohttp_client: Any, make_config: ConfigFactory) -> TestClient:
    return await start_admin(aiohttp_client, make_config)


def cookie_of(response: Any, name: str) -> Any:
    for header in response.headers.getall("Set-Cookie", []):
        parsed = SimpleCookie()
        parsed.load(header)
        if name in parsed:
            return parsed[name]
    raise AssertionError(f"no Set-Cookie for {name}: {response.headers.getall('Set-Cookie', [])}")


def use_session(client: TestClient, session_id: str) -> None:
    """Present `session_id` as the session cookie (and nothing else)."""
    client.session.cookie_jar.clear()
    client.session.cookie_jar.update_cookies({"keel_admin_session": session_id})


async def error_code(response: Any) -> str:
    body = await response.json()
    return str(body["error"]["code"])


# --- pages and redirects ------------------------------------------------------------


async def test_root_and_the_page_redirect_to_the_login_without_a_session(
    client: TestClient,
) -> None:
    root = await client.get("/", allow_redirects=False)
    assert (root.status, root.headers["Location"]) == (303, "/admin")
    page = await client.get("/admin", allow_redirects=False)
    assert (page.status, page.headers["Location"]) == (303, "/admin/login")


async def test_the_page_carries_the_csrf_token_and_only_external_scripts(
    client: TestClient,
) -> None:
    csrf = await login(client)
    html = await (await client.get("/admin")).text()
    assert f'<meta name="csrf-token" content="{csrf}">' in html
    assert '<script type="module" src="/admin/static/dashboard.js"></script>' in html
    assert "<script>" not in html
    assert "style=" not in html


async def test_every_admin_response_sends_the_security_headers(client: TestClient) -> None:
    await login(client)
    responses = [
        await client.get("/admin"),
        await client.get("/admin/login"),
        await client.get("/admin/api/state"),
        await client.get("/admin/static/dashboard.js"),
        await client.get("/admin/static/nope.js"),
        await client.get("/admin/no/such/page"),
        await client.post("/admin/api/breakers/redis/reset"),  # 403 csrf
    ]
    for response in responses:
        headers = response.headers
        csp = headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp
        assert "unsafe-inline" not in csp
        assert "unsafe-eval" not in csp
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "same-origin"
        assert headers["Cache-Control"] == "no-store"
    # The API's responses pay nothing for the dashboard.
    api = await client.get("/healthz")
    assert "Content-Security-Policy" not in api.headers


async def test_static_files_are_served_by_name_only(client: TestClient) -> None:
    script = await client.get("/admin/static/chart.js")
    assert script.status == 200
    assert script.content_type == "text/javascript"
    assert "export class TimeChart" in await script.text()
    style = await client.get("/admin/static/admin.css")
    assert style.content_type == "text/css"
    for path in ("/admin/static/..%2Fsettings.py", "/admin/static/%2e%2e", "/admin/static/x.py"):
        response = await client.get(path)
        assert response.status == 404, path
        assert await error_code(response) == "not_found"


# --- login --------------------------------------------------------------------------


async def test_login_sets_a_strict_http_only_cookie_scoped_to_admin(client: TestClient) -> None:
    response = await post_login(client, TOKEN, await login_form(client))
    assert response.status == 303
    cookie = cookie_of(response, "keel_admin_session")
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Strict"
    assert cookie["path"] == "/admin"
    assert not cookie["secure"]  # plain HTTP here
    assert int(cookie["max-age"]) == 28800


async def test_the_cookie_is_secure_behind_a_trusted_https_proxy(client: TestClient) -> None:
    csrf = await login_form(client)
    response = await post_login(client, TOKEN, csrf, **{"X-Forwarded-Proto": "https"})
    assert response.status == 303
    assert cookie_of(response, "keel_admin_session")["secure"] is True


async def test_x_forwarded_proto_from_an_untrusted_peer_is_ignored(
    aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    client = await start_admin(
        aiohttp_client, make_config, SERVER__TRUSTED_PROXIES='["10.0.0.0/8"]'
    )
    csrf = await login_form(client)
    response = await post_login(client, TOKEN, csrf, **{"X-Forwarded-Proto": "https"})
    assert response.status == 303
    assert not cookie_of(response, "keel_admin_session")["secure"]


async def test_each_login_issues_a_new_session_and_ends_the_old_one(client: TestClient) -> None:
    first = await post_login(client, TOKEN, await login_form(client))
    old = cookie_of(first, "keel_admin_session").value
    second = await post_login(client, TOKEN, await login_form(client))
    new = cookie_of(second, "keel_admin_session").value
    assert old != new
    use_session(client, new)
    assert (await client.get("/admin/api/state")).status == 200
    use_session(client, old)
    assert (await client.get("/admin/api/state")).status == 401


async def test_a_wrong_token_is_401_for_an_api_client_and_the_form_again_for_a_browser(
    client: TestClient,
) -> None:
    response = await post_login(client, "wrong", await login_form(client))
    assert response.status == 401
    assert await error_code(response) == "unauthorized"
    browser = await post_login(client, "wrong", await login_form(client), Accept="text/html")
    assert browser.status == 401
    assert browser.content_type == "text/html"
    assert "Wrong token." in await browser.text()


@pytest.mark.parametrize("field", [None, "forged", "0" * 64])
async def test_login_without_the_form_csrf_field_is_403_csrf(
    client: TestClient, field: str | None
) -> None:
    await login_form(client)  # the cookie is there; the field is missing or wrong
    response = await post_login(client, TOKEN, field)
    assert response.status == 403
    assert await error_code(response) == "csrf"


async def test_a_login_that_is_not_a_readable_form_is_400_or_415(client: TestClient) -> None:
    await login_form(client)
    broken = await client.post(
        "/admin/login", data=b"token=x", headers={"Content-Type": "multipart/form-data"}
    )
    assert (broken.status, await error_code(broken)) == (400, "bad_request")
    not_utf8 = await client.post(
        "/admin/login",
        data=b"\xff\xfe=1",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert (not_utf8.status, await error_code(not_utf8)) == (400, "bad_request")
    as_json = await client.post("/admin/login", json={"token": TOKEN})
    assert (as_json.status, await error_code(as_json)) == (415, "unsupported_media_type")


async def test_login_without_the_form_cookie_is_403_csrf(client: TestClient) -> None:
    csrf = await login_form(client)
    client.session.cookie_jar.clear()
    response = await post_login(client, TOKEN, csrf)
    assert response.status == 403
    assert await error_code(response) == "csrf"


async def test_failed_logins_past_the_limit_get_429_even_with_the_right_token(
    aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    client = await start_admin(aiohttp_client, make_config, ADMIN__LOGIN_LIMIT='"3/minute"')
    for _ in range(3):
        assert (await post_login(client, "wrong", await login_form(client))).status == 401
    limited = await post_login(client, TOKEN, await login_form(client))
    assert limited.status == 429
    assert await error_code(limited) == "rate_limited"
    assert 1 <= int(limited.headers["Retry-After"]) <= 20  # one failure refills in 20 s


async def test_a_successful_login_gives_the_address_its_budget_back(
    aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    client = await start_admin(aiohttp_client, make_config, ADMIN__LOGIN_LIMIT='"3/minute"')
    for _ in range(2):
        assert (await post_login(client, "wrong", await login_form(client))).status == 401
    assert (await post_login(client, TOKEN, await login_form(client))).status == 303
    for _ in range(3):
        assert (await post_login(client, "wrong", await login_form(client))).status == 401
    assert (await post_login(client, "wrong", await login_form(client))).status == 429


async def test_the_viewer_token_logs_in_as_viewer(client: TestClient) -> None:
    await login(client, VIEWER)
    html = await (await client.get("/admin")).text()
    assert '<meta name="keel-role" content="viewer">' in html


# --- sessions, roles and CSRF on the API ---------------------------------------------


async def test_without_a_session_every_api_call_is_401_and_the_socket_is_refused(
    client: TestClient,
) -> None:
    for path in API_GETS:
        response = await client.get(path)
        assert response.status == 401, path
        assert await error_code(response) == "unauthorized"
    for path, body in ACTIONS:
        response = await client.post(path, json=body)
        assert response.status == 401, path
    assert (await client.post("/admin/logout")).status == 401
    with pytest.raises(WSServerHandshakeError) as refused:
        await client.ws_connect("/admin/ws")
    assert refused.value.status == 401


@pytest.mark.parametrize("csrf", [None, "wrong"])
async def test_every_post_needs_the_session_csrf_token(
    client: TestClient, csrf: str | None
) -> None:
    await login(client)
    headers = {"X-CSRF-Token": csrf} if csrf else {}
    for path, body in ACTIONS:
        response = await client.post(path, json=body, headers=headers)
        assert response.status == 403, path
        assert await error_code(response) == "csrf"
    logout = await client.post("/admin/logout", headers=headers, allow_redirects=False)
    assert (logout.status, await error_code(logout)) == (403, "csrf")
    assert (await client.get("/admin/api/state")).status == 200  # still logged in


async def test_a_viewer_reads_everything_and_is_refused_every_action(client: TestClient) -> None:
    csrf = await login(client, VIEWER)
    for path in API_GETS:
        assert (await client.get(path)).status == 200, path
    for path, body in ACTIONS:
        response = await client.post(path, json=body, headers={"X-CSRF-Token": csrf})
        assert response.status == 403, path
        assert await error_code(response) == "forbidden"
    assert client.app[BREAKERS].get("redis").state == "closed"
    audit = await (await client.get("/admin/api/audit")).json()
    refused = [e for e in audit["entries"] if e["result"] == "refused: forbidden"]
    assert {e["action"] for e in refused} == {"breaker.force_open", "jobs.requeue", "jobs.purge"}
    assert {e["role"] for e in refused} == {"viewer"}


async def test_an_expired_session_is_401(aiohttp_client: Any, make_config: ConfigFactory) -> None:
    client = await start_admin(aiohttp_client, make_config, ADMIN__SESSION_TTL="1")
    await login(client)
    assert (await client.get("/admin/api/state")).status == 200
    await asyncio.sleep(1.1)
    assert (await client.get("/admin/api/state")).status == 401
    page = await client.get("/admin", allow_redirects=False)
    assert page.headers["Location"] == "/admin/login"


async def test_logout_ends_the_session_and_clears_the_cookie(client: TestClient) -> None:
    csrf = await login(client)
    cookie = client.session.cookie_jar.filter_cookies(client.make_url("/admin"))
    session_id = cookie["keel_admin_session"].value
    response = await client.post("/admin/logout", data={"csrf_token": csrf}, allow_redirects=False)
    assert (response.status, response.headers["Location"]) == (303, "/admin/login")
    assert cookie_of(response, "keel_admin_session").value == ""
    use_session(client, session_id)
    assert (await client.get("/admin/api/state")).status == 401


# --- state ----------------------------------------------------------------------------


async def test_state_describes_this_instance_and_every_plugin(client: TestClient) -> None:
    await login(client)
    created = await client.post("/api/items", json={"name": "a", "price": 1})
    item = (await created.json())["id"]
    for _ in range(5):
        assert (await client.get(f"/api/items/{item}")).status == 200
    state = await (await client.get("/admin/api/state")).json()
    assert set(state) >= {"generated_at", "instances", "degraded"}
    (me,) = state["instances"]
    instance = client.app[LIFECYCLE].instance
    assert (me["id"], me["pid"], me["version"]) == (instance.id, instance.pid, instance.version)
    assert me["ready"] is True
    assert me["phase"] == "running"
    assert me["stale"] is False
    assert me["uptime"] >= 0
    assert me["started_at"] == instance.started_at
    assert set(me["plugins"]) >= {"metrics", "breakers", "sharding", "cache", "queue", "admin"}
    assert state["degraded"] == []
    assert state["fleet"]["shared"] is False
    # The per-route series: the current second is closed by the once-a-second beat.
    await asyncio.sleep(1.2)
    state = await (await client.get("/admin/api/state")).json()
    series = state["instances"][0]["series"]
    route = series["routes"]["GET /api/items/{id}"]
    assert sum(route["rate"]) == 5
    assert len(route["rate"]) == len(series["t"]) == len(route["p99"])
    assert all(p is None or p > 0 for p in route["p50"])


async def test_the_socket_pushes_the_state_at_the_server_pace(
    aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    client = await start_admin(aiohttp_client, make_config, ADMIN__PUSH_INTERVAL="0.01")
    await login(client)
    async with client.ws_connect("/admin/ws") as ws:
        first = await ws.receive_json(timeout=5)
        assert first["op"] == "state"
        assert first["data"]["instances"][0]["id"] == client.app[LIFECYCLE].instance.id
        await ws.send_str('{"op": "faster please"}')  # ignored
        loop = asyncio.get_running_loop()
        started = loop.time()
        for _ in range(3):
            assert (await ws.receive_json(timeout=5))["op"] == "state"
        # push_interval 0.01 is raised to the floor of 0.25 s.
        assert loop.time() - started >= 0.5


async def test_logout_closes_the_sessions_sockets(
    aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    client = await start_admin(aiohttp_client, make_config, ADMIN__PUSH_INTERVAL="0.25")
    csrf = await login(client)
    async with client.ws_connect("/admin/ws") as ws:
        await ws.receive_json(timeout=5)
        await client.post("/admin/logout", data={"csrf_token": csrf}, allow_redirects=False)
        while True:
            message = await ws.receive(timeout=5)
            if message.type is not WSMsgType.TEXT:
                break
        assert message.type is WSMsgType.CLOSE
        assert ws.close_code == 1008


async def test_a_cross_origin_socket_is_refused(client: TestClient) -> None:
    await login(client)
    with pytest.raises(WSServerHandshakeError) as refused:
        await client.ws_connect("/admin/ws", headers={"Origin": "https://evil.example"})
    assert refused.value.status == 403


# --- breakers -------------------------------------------------------------------------


async def test_breaker_actions_apply_to_the_real_breakers_and_are_audited(
    client: TestClient,
) -> None:
    csrf = await login(client)
    headers = {"X-CSRF-Token": csrf}
    me = client.app[LIFECYCLE].instance.id
    registry = client.app[BREAKERS]
    for action, state in (
        ("force_open", "forced_open"),
        ("reset", "closed"),
        ("disable", "disabled"),
    ):
        response = await client.post(f"/admin/api/breakers/shard.0/{action}", headers=headers)
        assert response.status == 200
        body = await response.json()
        assert (body["applied"], body["missing"], body["unknown"]) == ([me], [], [])
        assert registry.get("shard.0").state == state
    unknown = await (await client.post("/admin/api/breakers/nope/reset", headers=headers)).json()
    assert unknown["unknown"] == [me]
    assert unknown["applied"] == []
    bad = await client.post("/admin/api/breakers/shard.0/explode", headers=headers)
    assert (bad.status, await error_code(bad)) == (404, "not_found")
    audit = await (await client.get("/admin/api/audit?limit=10")).json()
    actions = [(e["action"], e["target"]) for e in audit["entries"]]
    assert actions[:4] == [
        ("breaker.reset", "nope"),
        ("breaker.disable", "shard.0"),
        ("breaker.reset", "shard.0"),
        ("breaker.force_open", "shard.0"),
    ]


# --- the audit log --------------------------------------------------------------------


async def test_the_audit_log_has_every_field_newest_first(client: TestClient) -> None:
    assert (await post_login(client, "wrong", await login_form(client))).status == 401
    csrf = await login(client)
    await client.post("/admin/api/breakers/redis/force_open", headers={"X-CSRF-Token": csrf})
    body = await (await client.get("/admin/api/audit")).json()
    assert body["store"] == "shards"
    entries = body["entries"]
    assert [(e["action"], e["result"]) for e in entries] == [
        ("breaker.force_open", entries[0]["result"]),
        ("login", "ok"),
        ("login", "refused: wrong token"),
    ]
    assert entries[0]["result"].startswith("applied on 1")
    newest = entries[0]
    assert set(newest) >= {"at", "role", "session", "client", "action", "target", "result"}
    assert (newest["role"], newest["client"], newest["target"]) == (
        "operator",
        "127.0.0.1",
        "redis",
    )
    assert len(newest["session"]) == 8
    assert entries[1]["session"] == newest["session"]
    assert entries[2]["role"] is None
    assert entries[2]["session"] is None
    assert [e["at"] for e in entries] == sorted((e["at"] for e in entries), reverse=True)


@pytest.mark.parametrize("limit", ["0", "1001", "ten", "-1"])
async def test_a_bad_limit_is_422(client: TestClient, limit: str) -> None:
    await login(client)
    for path in ("/admin/api/audit", "/admin/api/jobs/dead"):
        response = await client.get(f"{path}?limit={limit}")
        assert (response.status, await error_code(response)) == (422, "invalid"), path


async def test_the_audit_log_is_kept_across_restarts(
    aiohttp_client: Any, make_config: ConfigFactory
) -> None:
    first = await start_admin(aiohttp_client, make_config)
    await login(first)
    await first.close()
    second = await start_admin(aiohttp_client, make_config)
    await login(second)
    entries = (await (await second.get("/admin/api/audit")).json())["entries"]
    assert [e["action"] for e in entries] == ["login", "login"]
    assert entries[0]["instance"] != entries[1]["instance"]


# --- secrets --------------------------------------------------------------------------


async def test_no_secret_leaks_into_state_pushes_pages_or_the_audit_log(
    aiohttp_client: Any, make_config: ConfigFactory, pg_databases: Any, private_redis: Any
) -> None:
    from tests.support.redis import open_batcher

    async with open_batcher(private_redis.url) as admin:
        await admin.execute("CONFIG", "SET", "requirepass", "redis-secret-XYZ")
    redis_url = private_redis.url.replace("redis://", "redis://:redis-secret-XYZ@")
    pg = (await pg_databases()).replace("postgres@", "postgres:pg-secret-XYZ@")
    client = await start_admin(
        aiohttp_client,
        make_config,
        REDIS__URL=redis_url,
        SHARDING__SHARDS=json.dumps([pg, "sqlite:///s1.db"]),
        UPSTREAMS__BILLING__URL="http://bill:upstream-secret-XYZ@127.0.0.1:9/api",
        ADMIN__TOKEN="operator-secret-XYZ",
        ADMIN__VIEWER_TOKEN="viewer-secret-XYZ",
    )
    csrf = await login(client, "operator-secret-XYZ")
    assert (await client.get("/api/upstream/billing/x")).status in (502, 504)
    await client.post(
        "/admin/api/breakers/upstream.billing/force_open", headers={"X-CSRF-Token": csrf}
    )
    seen = [
        await (await client.get("/admin/api/state")).text(),
        await (await client.get("/admin/api/audit")).text(),
        await (await client.get("/admin")).text(),
    ]
    async with client.ws_connect("/admin/ws") as ws:
        seen.append((await ws.receive(timeout=5)).data)
    everything = "\n".join(seen)
    assert "upstream.billing" in everything
    assert "shard.1" in everything
    assert "XYZ" not in everything  # ...without a secret
