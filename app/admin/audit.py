"""The audit log: every login, logout and operator action, kept and shared.

Where it is kept (`open_audit_log` picks): on the shards when the sharding
plugin is enabled (table `admin_audit`, migration 0003) — durable on every
dialect and shared by every instance; else in Redis when `[redis] url` is set
(a capped list); else in this process's memory (lost on restart, which the
startup log says). Shards come first because a Redis used as a cache is often
run without persistence: an audit log must survive a Redis restart.

An entry is written on any shard that answers (entries are read from all of
them and merged by id, which sorts by time), so one shard being down costs no
audit entry. The log is capped at `[admin] audit_entries`: the oldest beyond
it are deleted periodically (each shard keeps its share). Every entry is also
a log line (logger `keel.audit`), whether or not the store took it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from abc import ABC, abstractmethod
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any

from app.core.json_codec import JSONDecodeError, dumps, loads
from app.items.model import IdGenerator
from app.redis import REDIS_ERRORS, RedisService
from app.sharding.backend import ShardUnavailable
from app.sharding.shards import Shard, ShardSet

log = logging.getLogger("keel.audit")

FIELDS = ("id", "at", "role", "session", "client", "action", "target", "result", "instance")


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


@dataclass(frozen=True)
class AuditEntry:
    """One audited event. `session` is a short id (never the session's secret id)."""

    id: str
    at: str
    role: str | None
    session: str | None
    client: str
    action: str
    target: str | None
    result: str
    instance: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AuditEntry:
        values: dict[str, Any] = {name: data.get(name) for name in FIELDS}
        return cls(**values)


class AuditUnavailable(Exception):
    """The store could not take or give entries now."""


class AuditLog(ABC):
    kind: str

    @abstractmethod
    async def append(self, entry: AuditEntry) -> None:
        """Keep `entry`; `AuditUnavailable` if the store cannot take it now."""

    @abstractmethod
    async def recent(self, limit: int) -> list[AuditEntry]:
        """The newest `limit` entries, newest first."""

    async def trim(self) -> int:
        """Delete entries beyond the cap; how many went."""
        return 0


class MemoryAuditLog(AuditLog):
    kind = "memory"

    def __init__(self, keep: int) -> None:
        self._entries: deque[AuditEntry] = deque(maxlen=keep)

    async def append(self, entry: AuditEntry) -> None:
        self._entries.appendleft(entry)

    async def recent(self, limit: int) -> list[AuditEntry]:
        return list(self._entries)[:limit]


class RedisAuditLog(AuditLog):
    """A list under `<key_prefix>admin:audit`, newest at the head, trimmed at every append."""

    kind = "redis"

    def __init__(self, redis: RedisService, keep: int) -> None:
        self.redis = redis
        self.keep = keep
        self.key = redis.key("admin", "audit")

    async def append(self, entry: AuditEntry) -> None:
        client = self.redis.client
        if client is None:
            raise AuditUnavailable("redis is not connected")
        try:
            async with client.pipeline(transaction=True) as pipe:
                pipe.lpush(self.key, dumps(entry.as_dict()))
                pipe.ltrim(self.key, 0, self.keep - 1)
                await pipe.execute()
        except REDIS_ERRORS as exc:
            raise AuditUnavailable(str(exc)) from exc

    async def recent(self, limit: int) -> list[AuditEntry]:
        client = self.redis.client
        if client is None:
            raise AuditUnavailable("redis is not connected")
        try:
            raw = await client.lrange(self.key, 0, limit - 1)
        except REDIS_ERRORS as exc:
            raise AuditUnavailable(str(exc)) from exc
        entries = []
        for item in raw:
            try:
                entries.append(AuditEntry.from_dict(loads(item)))
            except (JSONDecodeError, TypeError):
                continue
        return entries


_INSERT = (
    "INSERT INTO admin_audit (id, at, role, session, client, action, target, result, instance)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
)
_RECENT = (
    "SELECT id, at, role, session, client, action, target, result, instance"
    " FROM admin_audit ORDER BY id DESC LIMIT $1"
)
# Keep the newest $1 + 1 rows: delete what is older than the (n+1)-th newest.
_TRIM = (
    "DELETE FROM admin_audit WHERE id <"
    " (SELECT id FROM admin_audit ORDER BY id DESC LIMIT 1 OFFSET $1) RETURNING id"
)


class ShardAuditLog(AuditLog):
    """Rows of `admin_audit` spread over the shards, read from all of them."""

    kind = "shards"

    def __init__(self, shards: ShardSet, keep: int) -> None:
        self.shards = shards
        self.keep = keep
        # What could not be read on the last `recent` (shown with the log).
        self.missing: list[str] = []

    def _order(self, entry_id: str) -> list[Shard]:
        home = self.shards.for_key(entry_id)
        others = [s for s in self.shards if s is not home]
        return [home, *sorted(others, key=lambda s: not s.healthy)]

    async def append(self, entry: AuditEntry) -> None:
        reasons = []
        for shard in self._order(entry.id):
            try:
                await shard.write(_INSERT, *(getattr(entry, name) for name in FIELDS))
            except ShardUnavailable as exc:
                reasons.append(exc.reason)
                continue
            return
        raise AuditUnavailable("no shard answered: " + "; ".join(reasons))

    async def recent(self, limit: int) -> list[AuditEntry]:
        shards = list(self.shards)
        results = await asyncio.gather(
            *(s.fetch(_RECENT, limit) for s in shards), return_exceptions=True
        )
        entries: list[AuditEntry] = []
        missing = []
        for shard, result in zip(shards, results, strict=True):
            if isinstance(result, ShardUnavailable):
                missing.append(shard.name)
                continue
            if isinstance(result, BaseException):
                raise result
            entries.extend(AuditEntry.from_dict(row) for row in result)
        self.missing = missing
        if missing and len(missing) == len(shards):
            raise AuditUnavailable("no shard answered")
        entries.sort(key=lambda e: e.id, reverse=True)
        return entries[:limit]

    async def trim(self) -> int:
        share = math.ceil(self.keep / len(self.shards))
        deleted = 0
        for shard in self.shards:
            try:
                deleted += len(await shard.write(_TRIM, share - 1))
            except ShardUnavailable:
                continue  # trimmed next time
        return deleted


class Auditor:
    """Writes entries to the log and as log lines; reads them back."""

    def __init__(self, store: AuditLog, instance: str) -> None:
        self.store = store
        self.instance = instance
        self._ids = IdGenerator()

    async def record(
        self,
        *,
        action: str,
        client: str,
        result: str,
        role: str | None = None,
        session: str | None = None,
        target: str | None = None,
    ) -> AuditEntry:
        entry = AuditEntry(
            id=self._ids(),
            at=iso(time.time()),
            role=role,
            session=session,
            client=client,
            action=action,
            target=target,
            result=result,
            instance=self.instance,
        )
        log.info(
            "audit: %s by %s (session %s) from %s on %s: %s",
            action,
            role or "anonymous",
            session or "-",
            client,
            target or "-",
            result,
            extra={"fields": {"audit": entry.as_dict()}},
        )
        try:
            await self.store.append(entry)
        except AuditUnavailable as exc:
            log.error("audit entry %s not stored (%s store): %s", entry.id, self.store.kind, exc)
        except Exception:
            log.exception("audit entry %s not stored (%s store)", entry.id, self.store.kind)
        return entry

    async def recent(self, limit: int) -> list[AuditEntry]:
        return await self.store.recent(limit)
