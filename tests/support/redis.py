"""A request-path batcher on a Redis of the test's choosing, closed on exit."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

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
