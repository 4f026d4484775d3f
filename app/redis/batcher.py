"""Automatic pipelining: the Redis commands issued in one event-loop turn go out together.

Under load many requests reach their Redis call in the same turn of the event
loop (the rate-limit check, the cache lookup). Sent one by one, each pays a
write, a wakeup and a read; queued here, they leave as one write when the
turn ends, on one pipelined connection (`RespConnection`) that does not wait
for earlier replies before writing more, and each caller gets its own reply
(or its own error) back. Replies are as Redis sends them (a status reply is
`b"OK"`), without redis-py's per-command conversions. A lone request pays
nothing extra: its batch is flushed at the end of the same turn.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from app.redis.connection import Command, Entry, RespConnection


class RedisBatcher:
    def __init__(self, client: aioredis.Redis, max_batch: int = 512) -> None:
        self.client = client
        self.max_batch = max_batch
        self._queue: list[Entry] = []
        self._connection = RespConnection(client)
        self._connecting: asyncio.Task[None] | None = None
        self.batches = 0
        self.commands = 0

    def execute(self, *command: Any) -> asyncio.Future[Any]:
        """Queue one command; the future resolves to its reply or its error."""
        return self._enqueue(command, None)

    def evalsha(
        self, sha: str, source: str, keys: Sequence[Any], args: Sequence[Any]
    ) -> asyncio.Future[Any]:
        """Run a script by its hash; a server that does not know it runs (and loads) `source`."""
        return self._enqueue(("EVALSHA", sha, len(keys), *keys, *args), source)

    def _enqueue(self, command: Command, source: str | None) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._queue:
            loop.call_soon(self._flush)  # after every callback already ready this turn
        self._queue.append((command, future, source))
        if len(self._queue) >= self.max_batch:
            self._flush()
        return future

    def _flush(self) -> None:
        if not self._queue:
            return
        if not self._connection.is_open:
            if self._connecting is None:  # the connect flushes what has queued meanwhile
                self._connecting = asyncio.get_running_loop().create_task(self._connect())
            return
        queued, self._queue = self._queue, []
        for start in range(0, len(queued), self.max_batch):  # only a connect lets it grow past
            batch = queued[start : start + self.max_batch]
            self.batches += 1
            self.commands += len(batch)
            self._connection.send(batch)

    async def _connect(self) -> None:
        try:
            await self._connection.open()
        except (RedisError, OSError) as exc:  # every caller waiting for it gets the error
            batch, self._queue = self._queue, []
            for _, future, _ in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        finally:
            self._connecting = None
        self._flush()

    async def drain(self) -> None:
        """Send what is queued and wait for every reply (their callers are waiting on them)."""
        self._flush()
        if self._connecting is not None:
            await asyncio.gather(self._connecting, return_exceptions=True)
        await self._connection.drain()

    async def aclose(self) -> None:
        await self.drain()
        await self._connection.aclose()
