"""The access log: one line per request, in the configured format, carrying the
request id and the resolved client; `logging.access_log = false` turns it off."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from app.application import create_app
from app.core.access_log import ACCESS_LOGGER, AccessLogger
from app.core.logging_config import LoggingSettings, configure_logging
from tests.support.apps import PROBE, ConfigFactory
from tests.support.services import REPO, free_port

WITH_PROBE = f'["metrics", "{PROBE}"]'
ACCESS = ACCESS_LOGGER.name

Logs = Callable[[Literal["text", "json"]], io.StringIO]


@pytest.fixture
def logs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Logs]:
    """`logs(format)`: the production log setup writing into a buffer; undone afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level

    def start(line_format: Literal["text", "json"]) -> io.StringIO:
        buffer = io.StringIO()
        monkeypatch.setattr(sys, "stderr", buffer)
        configure_logging(LoggingSettings(level="info", format=line_format))
        return buffer

    yield start
    root.handlers[:] = handlers  # configure_logging may also have removed one of ours
    root.setLevel(level)


async def serve_with_access_log(aiohttp_client, app: web.Application) -> TestClient:
    """Serve `app` with Keel's access logger, as `run.py serve` does.

    (pytest-aiohttp's `server_kwargs` would be dropped by `TestServer.__init__`;
    runner options reach the runner only through `start_server`.)
    """
    server = TestServer(app)
    await server.start_server(access_log_class=AccessLogger, access_log=ACCESS_LOGGER)
    return await aiohttp_client(server)


async def wait_for_lines(buffer: io.StringIO, marker: str, count: int) -> list[str]:
    """Access lines are written after the response is sent: wait until `count` are there."""
    for _ in range(300):
        lines = [line for line in buffer.getvalue().splitlines() if marker in line]
        if len(lines) >= count:
            return lines
        await asyncio.sleep(0.01)
    raise AssertionError(f"expected {count} line(s) with {marker!r}:\n{buffer.getvalue()}")


@pytest.fixture
async def client(aiohttp_client, make_config: ConfigFactory) -> TestClient:
    app = create_app(make_config(PLUGINS__ENABLED=WITH_PROBE))
    return await serve_with_access_log(aiohttp_client, app)


# --- JSON ------------------------------------------------------------------------------


async def test_json_access_line_is_one_object_with_the_request_fields(
    client: TestClient, logs: Logs
) -> None:
    buffer = logs("json")
    response = await client.get("/test/items/42?view=full", headers={"X-Request-ID": "json-1"})
    assert response.status == 200

    await wait_for_lines(buffer, f'"logger": "{ACCESS}"', 1)
    lines = buffer.getvalue().splitlines()
    objects = [json.loads(line) for line in lines]  # every line is exactly one object
    assert all(isinstance(obj, dict) for obj in objects)
    (access,) = [obj for obj in objects if obj["logger"] == ACCESS]
    assert access["request_id"] == "json-1"
    assert access["client"] == "127.0.0.1"
    assert access["method"] == "GET"
    assert access["path"].startswith("/test/items/42")
    assert access["status"] == 200
    assert isinstance(access["duration_ms"], int | float)
    assert access["duration_ms"] >= 0
    assert access["level"] == "info"


async def test_json_access_lines_follow_each_request(client: TestClient, logs: Logs) -> None:
    buffer = logs("json")
    created = await client.post("/test/echo", json={"a": 1})
    missing = await client.get("/nowhere")
    failed = await client.get("/test/raise/boom")
    assert (created.status, missing.status, failed.status) == (200, 404, 500)

    await wait_for_lines(buffer, f'"logger": "{ACCESS}"', 3)
    objects = [json.loads(line) for line in buffer.getvalue().splitlines()]
    access = [obj for obj in objects if obj["logger"] == ACCESS]
    assert [(a["method"], a["path"], a["status"]) for a in access] == [
        ("POST", "/test/echo", 200),
        ("GET", "/nowhere", 404),
        ("GET", "/test/raise/boom", 500),
    ]
    assert [a["request_id"] for a in access] == [
        created.headers["X-Request-ID"],
        missing.headers["X-Request-ID"],
        failed.headers["X-Request-ID"],
    ]
    assert len({a["request_id"] for a in access}) == 3


async def test_json_access_line_shows_the_client_forwarded_by_a_trusted_proxy(
    client: TestClient, logs: Logs
) -> None:
    buffer = logs("json")
    await client.get("/healthz", headers={"X-Forwarded-For": "1.2.3.4, 203.0.113.9"})
    (line,) = await wait_for_lines(buffer, f'"logger": "{ACCESS}"', 1)
    assert json.loads(line)["client"] == "203.0.113.9"


# --- text ------------------------------------------------------------------------------


async def test_text_access_line_has_method_path_status_and_request_id(
    client: TestClient, logs: Logs
) -> None:
    buffer = logs("text")
    response = await client.get("/test/items/7", headers={"X-Request-ID": "text-1"})
    assert response.status == 200
    (line,) = await wait_for_lines(buffer, f" {ACCESS} ", 1)
    assert "[text-1]" in line
    assert '"GET /test/items/7"' in line
    assert " 200 " in line
    assert "127.0.0.1" in line
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


async def test_text_access_line_of_an_error(client: TestClient, logs: Logs) -> None:
    buffer = logs("text")
    response = await client.delete("/healthz", headers={"X-Request-ID": "text-2"})
    assert response.status == 405
    (line,) = await wait_for_lines(buffer, f" {ACCESS} ", 1)
    assert "[text-2]" in line
    assert '"DELETE /healthz"' in line
    assert " 405 " in line


# --- on and off, through `run.py serve` ---------------------------------------------------


async def _serve_one_request(tmp_path: Path, access_log: bool) -> list[dict]:
    """Run `run.py serve` with JSON logs, make one request, stop it; return its log lines."""
    port = free_port()
    config = tmp_path / "config.toml"
    config.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    env.update(
        KEEL_SERVER__DATA_DIR=str(tmp_path / "data"),
        KEEL_SERVER__DRAIN_DELAY="0",
        KEEL_SERVER__SHUTDOWN_TIMEOUT="5",
        KEEL_PLUGINS__ENABLED='["metrics"]',
        KEEL_LOGGING__FORMAT="json",
        KEEL_LOGGING__ACCESS_LOG="true" if access_log else "false",
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "run.py",
        "--config",
        str(config),
        "--port",
        str(port),
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    seen: list[bytes] = []
    try:
        async with asyncio.timeout(20):
            while b"serving on" not in (seen[-1] if seen else b""):
                seen.append(line := await process.stderr.readline())
                assert line, b"".join(seen).decode()  # exited before serving
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"http://127.0.0.1:{port}/healthz", headers={"X-Request-ID": "served-1"}
            ) as response,
        ):
            assert response.status == 200
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(20):
            _, rest = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, (b"".join(seen) + rest).decode()
    text = (b"".join(seen) + rest).decode()
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


async def test_serve_writes_access_lines_by_default(tmp_path: Path) -> None:
    lines = await _serve_one_request(tmp_path, access_log=True)
    access = [line for line in lines if line["logger"] == ACCESS]
    assert len(access) == 1, lines
    assert access[0]["request_id"] == "served-1"
    assert access[0]["path"] == "/healthz"
    assert access[0]["status"] == 200


async def test_serve_writes_no_access_lines_when_disabled(tmp_path: Path) -> None:
    lines = await _serve_one_request(tmp_path, access_log=False)
    assert lines, "the server logged nothing at all: the capture is broken"
    assert [line for line in lines if line["logger"] == ACCESS] == []
    assert not any(line.get("path") == "/healthz" for line in lines)
