"""`X-Request-ID` through the real app: echoed when sane, replaced otherwise, on every
response (errors included), and carried by every log line of the request."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
from collections.abc import Iterator

import pytest
from aiohttp.test_utils import TestClient

from app.application import create_app
from app.core.logging_config import LoggingSettings, configure_logging
from tests.support.apps import PROBE, ConfigFactory

HEADER = "X-Request-ID"
SANE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
WITH_PROBE = f'["metrics", "{PROBE}"]'


@pytest.fixture
async def client(aiohttp_client, make_config: ConfigFactory) -> TestClient:
    return await aiohttp_client(create_app(make_config(PLUGINS__ENABLED=WITH_PROBE)))


@pytest.fixture
def json_logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """The production log setup (JSON lines) writing into a buffer; undone afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    buffer = io.StringIO()
    monkeypatch.setattr(sys, "stderr", buffer)
    configure_logging(LoggingSettings(level="info", format="json"))
    yield buffer
    root.handlers[:] = handlers  # configure_logging may also have removed one of ours
    root.setLevel(level)


def log_lines(buffer: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


@pytest.mark.parametrize(
    "incoming",
    [
        "abc",
        "0123456789abcdef",
        "req-1.2_3:4",
        "A" * 128,
        "550e8400-e29b-41d4-a716-446655440000",
    ],
)
async def test_a_sane_incoming_id_is_echoed(client: TestClient, incoming: str) -> None:
    response = await client.get("/healthz", headers={HEADER: incoming})
    assert response.status == 200
    assert response.headers[HEADER] == incoming


@pytest.mark.parametrize(
    "incoming",
    [
        pytest.param("A" * 129, id="129-chars"),
        pytest.param("abc def", id="space"),
        pytest.param("abc/def", id="slash"),
        pytest.param("abcé", id="non-ascii"),
        pytest.param("", id="empty"),
        pytest.param("abc;rm -rf", id="semicolon"),
        pytest.param("<script>", id="angle-brackets"),
    ],
)
async def test_an_insane_incoming_id_is_replaced_by_a_sane_one(
    client: TestClient, incoming: str
) -> None:
    response = await client.get("/healthz", headers={HEADER: incoming})
    assert response.status == 200
    replaced = response.headers[HEADER]
    assert replaced != incoming
    assert SANE.fullmatch(replaced), replaced


async def test_without_an_incoming_id_a_sane_one_is_generated(client: TestClient) -> None:
    response = await client.get("/healthz")
    assert SANE.fullmatch(response.headers[HEADER])


async def test_generated_ids_differ_between_requests(client: TestClient) -> None:
    ids = set()
    for _ in range(20):
        response = await client.get("/healthz")
        ids.add(response.headers[HEADER])
    assert len(ids) == 20


async def test_the_header_is_on_a_404_for_an_unknown_path(client: TestClient) -> None:
    response = await client.get("/no/such/path", headers={HEADER: "lost-1"})
    assert response.status == 404
    assert response.headers[HEADER] == "lost-1"
    generated = await client.get("/no/such/path")
    assert SANE.fullmatch(generated.headers[HEADER])


async def test_the_header_is_on_a_405(client: TestClient) -> None:
    response = await client.delete("/healthz", headers={HEADER: "wrong-method-1"})
    assert response.status == 405
    assert response.headers[HEADER] == "wrong-method-1"


async def test_the_header_is_on_a_422_raised_by_a_handler(client: TestClient) -> None:
    response = await client.get("/test/raise/Invalid", headers={HEADER: "invalid-1"})
    assert response.status == 422
    assert response.headers[HEADER] == "invalid-1"


async def test_the_header_is_on_a_500_from_an_unexpected_exception(client: TestClient) -> None:
    response = await client.get("/test/raise/boom", headers={HEADER: "boom-1"})
    assert response.status == 500
    assert response.headers[HEADER] == "boom-1"
    generated = await client.get("/test/raise/boom")
    assert generated.status == 500
    assert SANE.fullmatch(generated.headers[HEADER])


async def test_log_lines_of_a_request_carry_its_id(
    client: TestClient, json_logs: io.StringIO
) -> None:
    response = await client.get("/test/log", headers={HEADER: "log-line-1"})
    assert response.status == 200
    probe = [line for line in log_lines(json_logs) if line["logger"] == "tests.probe"]
    assert [line["message"] for line in probe] == ["probe info line"]
    assert probe[0]["request_id"] == "log-line-1"


async def test_log_lines_of_a_generated_id_carry_that_id(
    client: TestClient, json_logs: io.StringIO
) -> None:
    first = await client.get("/test/log")
    second = await client.get("/test/log")
    probe = [line for line in log_lines(json_logs) if line["logger"] == "tests.probe"]
    assert [line["request_id"] for line in probe] == [
        first.headers[HEADER],
        second.headers[HEADER],
    ]


async def test_the_500_traceback_log_record_carries_the_response_id(
    client: TestClient, json_logs: io.StringIO
) -> None:
    response = await client.get("/test/raise/boom")
    assert response.status == 500
    body = await response.text()
    assert "secret internal detail" not in body
    errors = [line for line in log_lines(json_logs) if line["level"] == "error"]
    assert len(errors) == 1, errors
    assert errors[0]["request_id"] == response.headers[HEADER]
    assert "RuntimeError: secret internal detail" in errors[0]["exc_info"]


async def test_log_lines_outside_a_request_carry_no_request_id(
    client: TestClient, json_logs: io.StringIO
) -> None:
    await client.get("/test/log", headers={HEADER: "inside-1"})
    logging.getLogger("tests.outside").warning("after the request")
    outside = [line for line in log_lines(json_logs) if line["logger"] == "tests.outside"]
    assert outside[0]["request_id"] == "-"


async def test_a_request_the_http_parser_refuses_gets_a_4xx_without_internals(
    client: TestClient,
) -> None:
    # aiohttp's HTTP parser refuses this before routing, so no middleware runs
    # (a known limit, in the README): the answer is still a 4xx, never a 500,
    # and it shows no traceback.
    response = await client.get("/healthz", headers={HEADER: "big-1", "X-Big": "a" * 20_000})
    assert response.status in (400, 431)
    assert "Traceback" not in await response.text()
