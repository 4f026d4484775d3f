"""Every error status of DESIGN.md reaches the client in the one JSON shape."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from app.application import create_app
from tests.support.apps import PROBE, ConfigFactory
from tests.support.polling import eventually
from tests.support.process import KeelProcess


@pytest.fixture
async def client(aiohttp_client, make_config: ConfigFactory) -> TestClient:
    config = make_config(PLUGINS__ENABLED=f'["metrics", "{PROBE}"]', SERVER__CLIENT_MAX_SIZE="64")
    return await aiohttp_client(create_app(config))


async def error_of(response) -> dict:
    assert response.content_type == "application/json"
    body = await response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["message"]
    return body["error"]


@pytest.mark.parametrize(
    ("name", "status", "code"),
    [
        ("BadJSON", 400, "bad_json"),
        ("NotFound", 404, "not_found"),
        ("PreconditionFailed", 412, "precondition_failed"),
        ("TooLarge", 413, "too_large"),
        ("UnsupportedMediaType", 415, "unsupported_media_type"),
        ("Invalid", 422, "invalid"),
        ("BadGateway", 502, "bad_gateway"),
        ("UpstreamTimeout", 504, "upstream_timeout"),
    ],
)
async def test_raised_errors_map_to_status_and_code(
    client: TestClient, name: str, status: int, code: str
) -> None:
    response = await client.get(f"/test/raise/{name}")
    assert response.status == status
    error = await error_of(response)
    assert error["code"] == code
    assert error["details"] == [{"field": "x", "why": "because"}]


@pytest.mark.parametrize(
    ("name", "status", "code"),
    [
        ("RateLimited", 429, "rate_limited"),
        ("Unavailable", 503, "unavailable"),
        ("CircuitOpen", 503, "circuit_open"),
    ],
)
async def test_retry_later_errors_carry_retry_after_rounded_up(
    client: TestClient, name: str, status: int, code: str
) -> None:
    response = await client.get(f"/test/raise/{name}")
    assert response.status == status
    assert (await error_of(response))["code"] == code
    assert response.headers["Retry-After"] == "3"  # 2.5 s rounds up, never down


async def test_unknown_path_is_404_not_found(client: TestClient) -> None:
    response = await client.get("/no/such/thing")
    assert response.status == 404
    assert (await error_of(response))["code"] == "not_found"


async def test_wrong_method_is_405_with_allow(client: TestClient) -> None:
    response = await client.delete("/healthz")
    assert response.status == 405
    assert (await error_of(response))["code"] == "method_not_allowed"
    assert "GET" in response.headers["Allow"]


async def test_body_over_client_max_size_is_413(client: TestClient) -> None:
    response = await client.post("/test/echo", json={"pad": "x" * 200})
    assert response.status == 413
    assert (await error_of(response))["code"] == "too_large"


async def test_non_json_body_is_415(client: TestClient) -> None:
    response = await client.post("/test/echo", data="a=1", headers={"Content-Type": "text/plain"})
    assert response.status == 415
    assert (await error_of(response))["code"] == "unsupported_media_type"


@pytest.mark.parametrize("body", [b"{", b"", b"\xff\xfe", b"[1,]"])
async def test_malformed_json_is_400(client: TestClient, body: bytes) -> None:
    response = await client.post(
        "/test/echo", data=body, headers={"Content-Type": "application/json"}
    )
    assert response.status == 400
    assert (await error_of(response))["code"] == "bad_json"


async def test_a_bug_is_500_internal_logged_with_the_request_id_never_leaked(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="keel.errors"):
        response = await client.get("/test/raise/boom", headers={"X-Request-ID": "req-500"})
    assert response.status == 500
    error = await error_of(response)
    assert error["code"] == "internal"
    text = await response.text()
    assert "secret internal detail" not in text
    assert "Traceback" not in text
    (record,) = [r for r in caplog.records if r.name == "keel.errors"]
    assert record.exc_info is not None
    assert "secret internal detail" in str(record.exc_info[1])
    assert response.headers["X-Request-ID"] == "req-500"


async def test_a_client_that_leaves_mid_body_is_no_server_error(tmp_path: Path) -> None:
    """It sent part of a body and hung up: nobody to answer, nothing broken (499, no trace)."""
    keel = await KeelProcess(tmp_path, "", env={"KEEL_SERVER__DRAIN_DELAY": "0"}).start()
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", keel.port)
        writer.write(
            b"POST /api/items HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 60\r\n\r\n{"
        )
        await writer.drain()
        await asyncio.sleep(0.2)  # the handler is reading the body by now
        writer.close()
        await writer.wait_closed()
        await eventually(lambda: '"POST /api/items" 499' in keel.log(), "the access line")
    finally:
        keel.signal(signal.SIGTERM)
        await keel.exit_status()
    assert "unhandled error" not in keel.log()
    assert "Traceback" not in keel.log()
