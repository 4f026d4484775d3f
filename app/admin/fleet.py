"""Every live instance's snapshot and series, shared through Redis.

Each instance, once a second, in one pipeline:

- `SET <prefix>admin:snapshot:<id>` its snapshot (JSON), expiring after `DROP_AFTER`;
- `ZADD <prefix>admin:instances <now> <id>` (the set of reporting instances);
- `RPUSH <prefix>admin:series:<id>` the per-route points not yet published
  (usually one), `LTRIM` to the last `KEEP_SECONDS`, expiring with the snapshot.

So 15 minutes of 1-second history is written once, a point at a time, and
read whole only when a page opens (`history=True`); a live push reads the
last few points of each instance. An instance that has not reported for
`STALE_AFTER` seconds is marked stale (stopped reporting: crashed, paused or
partitioned); after `DROP_AFTER` seconds it is dropped. Without Redis the
fleet is this instance alone.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from app.admin.series import KEEP_SECONDS, Point, columns, decode_point, encode_point
from app.core.json_codec import JSONDecodeError, dumps, loads
from app.redis import REDIS_ERRORS, RedisService

log = logging.getLogger("keel.admin")

STALE_AFTER = 5.0
DROP_AFTER = 60.0
# Points a live push carries per instance: enough to cover a late or skipped report.
RECENT_POINTS = 5


class Fleet:
    def __init__(
        self,
        redis: RedisService | None,
        instance_id: str,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis if redis is not None and redis.enabled else None
        self.instance_id = instance_id
        self.clock = clock
        self.error = ""  # the last Redis failure, "" while fine
        self.published_through = -1  # the last second whose point is in Redis

    @property
    def shared(self) -> bool:
        return self.redis is not None

    def _key(self, *parts: str) -> str:
        assert self.redis is not None
        return self.redis.key("admin", *parts)

    async def publish(self, snapshot: dict[str, Any], points: list[Point]) -> None:
        """Report this instance's snapshot and its new points (no-op without Redis)."""
        if self.redis is None or self.redis.client is None:
            return
        now = self.clock()
        fresh = [p for p in points if p[0] > self.published_through]
        ttl = int(DROP_AFTER * 1000)
        series = self._key("series", self.instance_id)
        try:
            async with self.redis.client.pipeline(transaction=False) as pipe:
                pipe.set(self._key("snapshot", self.instance_id), dumps(snapshot), px=ttl)
                pipe.zadd(self._key("instances"), {self.instance_id: now})
                pipe.zremrangebyscore(self._key("instances"), "-inf", now - DROP_AFTER)
                if fresh:
                    pipe.rpush(series, *(dumps(encode_point(p)) for p in fresh))
                    pipe.ltrim(series, -KEEP_SECONDS, -1)
                pipe.pexpire(series, ttl)
                await pipe.execute()
        except REDIS_ERRORS as exc:
            self._failed(exc)
            return
        if fresh:
            self.published_through = fresh[-1][0]
        self._recovered()

    async def others(self, *, history: bool) -> list[dict[str, Any]]:
        """The other instances' last snapshots, each with `series`, `last_seen` and `stale`."""
        if self.redis is None or self.redis.client is None:
            return []
        client = self.redis.client
        now = self.clock()
        try:
            members = await client.zrangebyscore(
                self._key("instances"), now - DROP_AFTER, "+inf", withscores=True
            )
            seen: dict[str, float] = {}
            for pair in members:
                member, score = pair[0], pair[1]
                name = member.decode() if isinstance(member, bytes) else str(member)
                seen[name] = float(score)
            seen.pop(self.instance_id, None)
            ids = sorted(seen)
            if not ids:
                self._recovered()
                return []
            start = 0 if history else -RECENT_POINTS
            async with client.pipeline(transaction=False) as pipe:
                pipe.mget([self._key("snapshot", i) for i in ids])
                for i in ids:
                    pipe.lrange(self._key("series", i), start, -1)
                replies = await pipe.execute()
        except REDIS_ERRORS as exc:
            self._failed(exc)
            return []
        self._recovered()
        found = []
        for instance_id, raw, series in zip(ids, replies[0], replies[1:], strict=True):
            snapshot = _decode(raw)
            if snapshot is None:
                continue  # expired between the two reads
            points = [p for p in (_decode_point(item) for item in series) if p is not None]
            snapshot["series"] = columns(points)
            snapshot["last_seen"] = seen[instance_id]
            snapshot["stale"] = now - seen[instance_id] > STALE_AFTER
            found.append(snapshot)
        return found

    async def leave(self) -> None:
        """Stop being listed (at shutdown): drop this instance's keys."""
        if self.redis is None or self.redis.client is None:
            return
        try:
            async with self.redis.client.pipeline(transaction=False) as pipe:
                pipe.zrem(self._key("instances"), self.instance_id)
                pipe.delete(
                    self._key("snapshot", self.instance_id), self._key("series", self.instance_id)
                )
                await pipe.execute()
        except REDIS_ERRORS as exc:
            log.warning("admin: could not remove this instance from Redis: %s", exc)

    def _failed(self, exc: BaseException) -> None:
        if not self.error:
            log.warning("admin: cannot reach Redis to share state (%s); showing this instance", exc)
        self.error = str(exc) or type(exc).__name__

    def _recovered(self) -> None:
        if self.error:
            log.info("admin: sharing state through Redis again")
        self.error = ""


def _decode(raw: Any) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        value = loads(raw)
    except JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _decode_point(raw: Any) -> Point | None:
    try:
        return decode_point(loads(raw))
    except JSONDecodeError:
        return None
