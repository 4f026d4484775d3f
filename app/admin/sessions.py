"""Dashboard sessions: in process memory, or in Redis so that every instance shares them.

A session is created at login (always a new id), read on every dashboard
request and ended at logout or when `session_ttl` runs out. With `[redis] url`
set the sessions live in Redis with that TTL, so a login on one instance is
valid on every other behind the same load balancer, and a logout ends it
everywhere. The store keys a session by a hash of its id: what Redis holds
cannot be replayed as a cookie.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Literal

import redis.asyncio as aioredis

from app.core.json_codec import JSONDecodeError, dumps, loads
from app.errors import Unavailable
from app.redis import REDIS_ERRORS, RedisService

Role = Literal["operator", "viewer"]
ROLES: tuple[Role, ...] = ("operator", "viewer")


@dataclass(frozen=True)
class Session:
    """One login: its role, its CSRF token and when it ends (epoch seconds)."""

    id: str
    role: Role
    csrf: str
    created: float
    expires: float

    @property
    def short_id(self) -> str:
        """What the audit log shows: enough to tell sessions apart, useless as a cookie."""
        return short_id(self.id)


def short_id(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()[:8]


def _storage_key(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class SessionStore(ABC):
    """Where sessions live; `create`, `get` and `delete` are all it does."""

    kind: str

    def __init__(self, ttl: float, clock: Callable[[], float] = time.time) -> None:
        self.ttl = ttl
        self.clock = clock

    def _new(self, role: Role) -> Session:
        now = self.clock()
        return Session(
            id=secrets.token_urlsafe(32),
            role=role,
            csrf=secrets.token_urlsafe(32),
            created=now,
            expires=now + self.ttl,
        )

    @abstractmethod
    async def create(self, role: Role) -> Session:
        """A new session with a fresh id and CSRF token."""

    @abstractmethod
    async def get(self, session_id: str) -> Session | None:
        """The live session with this id, or None (unknown, ended or expired)."""

    @abstractmethod
    async def delete(self, session_id: str) -> bool:
        """End the session; False if there was none."""


class MemorySessionStore(SessionStore):
    """Sessions of this process only (no Redis): a restart ends them."""

    kind = "memory"

    def __init__(self, ttl: float, clock: Callable[[], float] = time.time) -> None:
        super().__init__(ttl, clock)
        self._sessions: dict[str, Session] = {}

    async def create(self, role: Role) -> Session:
        self._sweep()
        session = self._new(role)
        self._sessions[_storage_key(session.id)] = session
        return session

    async def get(self, session_id: str) -> Session | None:
        session = self._sessions.get(_storage_key(session_id))
        if session is None or session.expires <= self.clock():
            return None
        return session

    async def delete(self, session_id: str) -> bool:
        return self._sessions.pop(_storage_key(session_id), None) is not None

    def _sweep(self) -> None:
        now = self.clock()
        for key in [k for k, s in self._sessions.items() if s.expires <= now]:
            del self._sessions[key]

    def __len__(self) -> int:
        return len(self._sessions)


class RedisSessionStore(SessionStore):
    """Sessions in Redis under `<key_prefix>admin:session:<hash>`, expiring with the session."""

    kind = "redis"

    def __init__(
        self, redis: RedisService, ttl: float, clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__(ttl, clock)
        self.redis = redis

    def _key(self, session_id: str) -> str:
        return self.redis.key("admin", "session", _storage_key(session_id))

    def _client(self) -> aioredis.Redis:
        client = self.redis.client
        if client is None:
            raise Unavailable("the session store (Redis) is not connected", retry_after=1)
        return client

    async def create(self, role: Role) -> Session:
        session = self._new(role)
        record = asdict(session)
        del record["id"]
        try:
            await self._client().set(
                self._key(session.id), dumps(record), px=max(1, int(self.ttl * 1000))
            )
        except REDIS_ERRORS as exc:
            raise Unavailable(f"the session store (Redis) failed: {exc}", retry_after=1) from exc
        return session

    async def get(self, session_id: str) -> Session | None:
        try:
            raw = await self._client().get(self._key(session_id))
        except REDIS_ERRORS as exc:
            raise Unavailable(f"the session store (Redis) failed: {exc}", retry_after=1) from exc
        if raw is None:
            return None
        try:
            record = loads(raw)
            session = Session(
                id=session_id,
                role=record["role"],
                csrf=record["csrf"],
                created=float(record["created"]),
                expires=float(record["expires"]),
            )
        except (JSONDecodeError, KeyError, TypeError, ValueError):
            return None  # not a session we wrote: no access
        if session.role not in ROLES or session.expires <= self.clock():
            return None
        return session

    async def delete(self, session_id: str) -> bool:
        try:
            return bool(await self._client().delete(self._key(session_id)))
        except REDIS_ERRORS as exc:
            raise Unavailable(f"the session store (Redis) failed: {exc}", retry_after=1) from exc
