"""The machine's services as the tests reach them, and what happens when one is missing.

When a service is missing a test fails under `CI=true` (a missing service is a
broken run) and is skipped elsewhere, with a message saying what to start.
"""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Private to this test run: key prefixes, queue names and databases carry it.
RUN_ID = uuid.uuid4().hex[:10]

REDIS_URL = os.environ.get("KEEL_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
PG_ADMIN_URL = os.environ.get("KEEL_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
AMQP_URL = os.environ.get("KEEL_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


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
