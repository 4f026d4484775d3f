"""Reading a cache key ahead of the handler, inside a Redis call the request makes anyway.

Every limited request already sends one script to Redis before its handler
runs: the rate limiter's. A handler that declares the cache key it is going
to look up (`@reads_cache_key`) lets that script carry the cache's lease step
too (`app.ratelimit.redis_limiter.SCRIPT_WITH_LEASE`); the handler then
passes `request.get(READ_AHEAD)` to `Cache.get_or_load`, which uses the reply
instead of asking Redis again. A cached read costs one command, one breaker
check and one wake-up instead of two of each.

Nothing depends on the ride happening: without a Redis cache, while the cache
is not usable, during a limiter outage, or when the request is refused, no
reply arrives and the lookup asks Redis itself as it always did. A lease
taken ahead and then not used (the handler failed first) expires after
`[cache] lease_seconds`, as would a lease whose holder died.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiohttp import web

from app.cache.backend import LeaseStep

Handler = TypeVar("Handler", bound=Callable[[web.Request], Awaitable[web.StreamResponse]])

_KEY_OF = "keel_cache_key_of"


class ReadAhead:
    """One lease step sent ahead for `key` under `token`; `reply` once Redis answered it."""

    __slots__ = ("answered", "key", "reply", "step", "token")

    def __init__(self, key: str, token: str, step: LeaseStep) -> None:
        self.key = key
        self.token = token
        self.step = step
        self.answered = False
        self.reply: object = None

    def arrived(self, reply: object) -> None:
        self.answered = True
        self.reply = reply


READ_AHEAD = web.RequestKey("keel.cache.read_ahead", ReadAhead)


def reads_cache_key(key_of: Callable[[web.Request], str | None]) -> Callable[[Handler], Handler]:
    """Declare the cache key a handler will look up: `key_of(request)`, None for none."""

    def mark(handler: Handler) -> Handler:
        setattr(handler, _KEY_OF, key_of)
        return handler

    return mark


def cache_key_of(request: web.Request) -> str | None:
    """The cache key the request's handler declared it will look up, if any."""
    key_of = getattr(request.match_info.handler, _KEY_OF, None)
    return key_of(request) if key_of is not None else None
