"""A Lua script run on the request-path batch, through the `redis` guard.

`Script(source)` knows its SHA1: the batcher sends EVALSHA and, when Redis
does not know the script (a restart flushed it), EVAL once, which loads it.
`attempt()` is the call of a caller that degrades when Redis is away: the
reply, or None — the failure noted in the caller's `Outage` (one log line
when it starts), a refusal by the guard passed over quietly (the breaker
reports itself).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError

from app.core.guard import Refused, call_guarded
from app.core.outage import Outage
from app.redis.service import REDIS_ERRORS, RedisService


@dataclass(frozen=True)
class Script:
    source: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", hashlib.sha1(self.source.encode()).hexdigest())

    async def run(self, redis: RedisService, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """The script's reply; `Refused` by the guard, or one of `REDIS_ERRORS`."""
        batch = redis.batch
        if batch is None:
            raise RedisConnectionError("the redis client is closed")
        return await call_guarded(
            redis.guard, lambda: batch.evalsha(self.sha, self.source, keys, args), REDIS_ERRORS
        )

    async def attempt(
        self,
        redis: RedisService,
        keys: Sequence[Any],
        args: Sequence[Any],
        outage: Outage,
        meanwhile: str,
    ) -> Any | None:
        """The reply, or None when Redis cannot answer now (`meanwhile`: what the caller
        does until it can, logged when the outage starts)."""
        try:
            reply = await self.run(redis, keys, args)
        except Refused:
            return None
        except REDIS_ERRORS as exc:
            outage.failed(exc, meanwhile)
            return None
        outage.recovered()
        return reply
