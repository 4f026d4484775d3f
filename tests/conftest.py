"""Shared fixtures: configs built the way production builds them, and real services.

Tests that need Redis talk to the machine's Redis under a key prefix private to
this test run. When a service is missing the test fails under `CI=true`; on a
laptop it is skipped with a message saying what to start.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from app.config import Config, load_config

REPO = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("KEEL_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
RUN_ID = uuid.uuid4().hex[:10]
PROBE = "tests.plugins.probe:ProbePlugin"

ConfigFactory = Callable[..., Config]


def service_missing(what: str) -> None:
    """Fail under CI (a missing service is a broken run), skip elsewhere."""
    message = f"{what} is not reachable; start it (see .ci/run) to run this test"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def make_config(tmp_path: Path) -> ConfigFactory:
    """`make_config(toml_text, **env)`: load a config the way `run.py` does.

    Environment keys are given without the KEEL_ prefix: `SERVER__PORT="9000"`.
    The process environment is not read, so tests do not depend on it.
    """

    def make(toml: str = "", **env: str) -> Config:
        path = tmp_path / f"config-{uuid.uuid4().hex[:6]}.toml"
        path.write_text(toml)
        full_env = {"KEEL_SERVER__DATA_DIR": str(tmp_path / "data")}
        full_env.update({f"KEEL_{k}": v for k, v in env.items()})
        return load_config(path, full_env)

    return make


@pytest.fixture(scope="session")
def redis_url() -> str:
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.RedisError:
        service_missing(f"Redis at {REDIS_URL}")
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix private to this test; its keys are deleted afterwards."""
    prefix = f"keel-test:{RUN_ID}:{uuid.uuid4().hex[:6]}:"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
