"""Redis for tests: a request-path batcher closed on exit, and deleting a test's keys."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import redis
import redis.asyncio as aioredis

from app.redis import RedisBatcher


@contextlib.asynccontextmanager
async def open_batcher(url: str, **client_options: Any) -> AsyncIterator[RedisBatcher]:
    """A redis-py client and the request-path batcher on it, both closed on exit."""
    client = aioredis.Redis.from_url(url, **client_options)
    batcher = RedisBatcher(client)
    try:
        yield batcher
    finally:
        await batcher.aclose()
        await client.aclose()


def delete_redis_keys(url: str, prefix: str) -> None:
    """Delete every key under `prefix` (a test's own)."""
    client = redis.Redis.from_url(url)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
