"""Automatic pipelining: the Redis commands issued in one event-loop turn go out together.

Under load many requests reach their Redis call in the same turn of the event
loop (the rate-limit check, the cache lookup). Sent one by one, each pays a
pool checkout, a write, a wakeup and a read; queued here, they leave as one
pipeline when the turn ends — one write and one read for all of them — and
each caller gets its own reply (or its own error) back. A lone request pays
nothing extra: its batch is flushed at the end of the same turn.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

Command = tuple[Any, ...]


class RedisBatcher:
    def __init__(self, client: aioredis.Redis, max_batch: int = 512) -> None:
        self.client = client
        self.max_batch = max_batch
        self._queue: list[tuple[Command, asyncio.Future[Any]]] = []
        self._flushing: set[asyncio.Task[None]] = set()
        self.batches = 0
        self.commands = 0

    def execute(self, *command: Any) -> asyncio.Future[Any]:
        """Queue one command; the future resolves to its reply or its error."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._queue:
            loop.call_soon(self._flush)  # after every callback already ready this turn
        self._queue.append((command, future))
        if len(self._queue) >= self.max_batch:
            self._flush()
        return future

    async def evalsha(self, sha: str, source: str, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """Run a script by its hash, loading it first if the server does not know it."""
        try:
            return await self.execute("EVALSHA", sha, len(keys), *keys, *args)
        except NoScriptError:  # a restarted or flushed server: load once, then by hash again
            await self.client.script_load(source)
            return await self.execute("EVALSHA", sha, len(keys), *keys, *args)

    def _flush(self) -> None:
        if not self._queue:
            return
        batch, self._queue = self._queue, []
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._flushing.add(task)
        task.add_done_callback(self._flushing.discard)

    async def _send(self, batch: list[tuple[Command, asyncio.Future[Any]]]) -> None:
        self.batches += 1
        self.commands += len(batch)
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for command, _ in batch:
                    pipe.execute_command(*command)
                replies = await pipe.execute(raise_on_error=False)
        except BaseException as exc:  # the connection failed: every caller gets the error
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception) else ConnectionError())
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), reply in zip(batch, replies, strict=True):
            if future.done():  # its caller gave up (cancelled)
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def aclose(self) -> None:
        """Let batches in flight finish (their callers are waiting on them)."""
        self._flush()
        if self._flushing:
            await asyncio.gather(*self._flushing, return_exceptions=True)
