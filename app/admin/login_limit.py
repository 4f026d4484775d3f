"""`[admin] login_limit`: failed logins allowed per client address, then 429.

The rate limiter's own GCRA (`app.ratelimit`) counts them — in Redis when
`[redis] url` is set, so the budget is shared by every instance behind the
load balancer, in process memory otherwise (and while Redis is unreachable).

Every login attempt spends one unit *before* the token is checked, so a
client past its budget learns nothing about the token it sent, not even
whether it was right; a successful login gives the address its whole budget
back. So `5/minute` lets five wrong tokens through in a burst, then one more
every twelve seconds.
"""

from __future__ import annotations

import logging

from app.ratelimit.algorithm import Decision
from app.ratelimit.limits import Limit
from app.ratelimit.memory_limiter import MemoryLimiter
from app.ratelimit.redis_limiter import RedisLimiter
from app.redis import REDIS_ERRORS, RedisService

log = logging.getLogger("keel.admin")


class LoginLimiter:
    def __init__(self, limit: Limit, redis: RedisService | None = None) -> None:
        self.limit = limit
        self.redis = redis if redis is not None and redis.enabled else None
        self.memory = MemoryLimiter()

    def _remote(self) -> RedisLimiter | None:
        if self.redis is None or self.redis.batch is None:
            return None
        return RedisLimiter(self.redis.batch)

    def _key(self, address: str) -> str:
        if self.redis is None:
            return f"admin-login:{address}"
        return self.redis.key("admin", "login", address)

    async def attempt(self, address: str) -> Decision:
        """Spend one login attempt of `address`; refused past the budget."""
        key = self._key(address)
        remote = self._remote()
        if remote is not None:
            try:
                return await remote.hit(key, self.limit)
            except REDIS_ERRORS as exc:
                log.warning("login limit: Redis unreachable (%s); counting in this process", exc)
        return self.memory.hit_now(key, self.limit)

    async def succeeded(self, address: str) -> None:
        """A login from `address` succeeded: its earlier failures no longer count."""
        key = self._key(address)
        await self.memory.forget(key)
        remote = self._remote()
        if remote is not None:
            try:
                await remote.forget(key)
            except REDIS_ERRORS as exc:
                log.warning("login limit: could not clear %s in Redis: %s", address, exc)
