"""The `sharding` plugin: the physical shards, their migrations and health, and the items API.

Publishes `app[SHARDS]` (a `ShardSet`, built by `app.sharding.factory`). At
startup every shard is connected and, with `auto_migrate = true`, migrated; a
shard ahead of the code stops startup. A shard that cannot be reached at
startup starts marked down: only its keys fail (503) until the health loop
reaches it, migrates it and brings it back. The items routes
(`app/api/items.py`) are added here, reading through the cache when it is enabled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Coroutine, Iterable
from typing import Any

from aiohttp import web

from app.api import items as items_api
from app.api import items_openapi
from app.breakers import BREAKERS
from app.cache import CACHE
from app.config import Config
from app.core.background import background
from app.metrics import registry_of
from app.plugins import BasePlugin, Readiness, SettingsOf
from app.sharding import SHARDS, ShardingSettings, ShardUnavailable
from app.sharding.factory import build_shards
from app.sharding.group_commit import GroupCommit
from app.sharding.migrations import MigrationError, migrate, schema_version
from app.sharding.shards import Shard

log = logging.getLogger("keel.sharding")


async def _all_or_none(coroutines: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run together; if one fails, cancel and await the rest before raising."""
    tasks = [asyncio.create_task(c) for c in coroutines]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


class ShardingPlugin(BasePlugin):
    name = "sharding"
    optional = ("metrics", "breakers", "cache")
    settings = SettingsOf(ShardingSettings)

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self._connected: set[int] = set()
        self.rows: dict[int, int | None] = {}

    def setup(self, app: web.Application) -> None:
        self.shards = app[SHARDS] = build_shards(
            self.settings, self.config.server.data_path, registry_of(app), app.get(BREAKERS)
        )
        items_api.setup(app, self.shards, app.get(CACHE))

    @contextlib.asynccontextmanager
    async def lifespan(self, app: web.Application) -> AsyncIterator[None]:
        try:
            await _all_or_none(self._bring_up(shard) for shard in self.shards)
            async with background("keel.sharding.health", self._watch):
                yield
        finally:
            await asyncio.gather(*(self._close(s) for s in self.shards))

    async def _close(self, shard: Shard) -> None:
        """Close one shard; one that does not answer must not hang shutdown."""
        try:
            async with asyncio.timeout(self.settings.connect_timeout * 2):
                await shard.backend.close()
        except TimeoutError:
            log.error(
                "%s did not close within %.1fs; abandoning it",
                shard.name,
                self.settings.connect_timeout * 2,
            )

    async def _bring_up(self, shard: Shard) -> None:
        """Connect and migrate; a shard out of reach is marked down, one ahead stops startup."""
        try:
            if shard.index not in self._connected:
                async with asyncio.timeout(self.settings.connect_timeout * 2):
                    await shard.backend.open()
                self._connected.add(shard.index)
            if self.settings.auto_migrate:
                report = await migrate(shard.name, shard.backend)
                if report.applied:
                    log.info("%s: applied %s", shard.name, ", ".join(report.applied))
            shard.schema_version = await schema_version(shard.backend)
        except (ShardUnavailable, TimeoutError) as exc:
            shard.mark_down(
                exc.reason if isinstance(exc, ShardUnavailable) else "connect timed out"
            )
            return
        except MigrationError:
            raise
        shard.mark_up()

    async def _watch(self) -> None:
        """Ping every shard; bring back those that were down; refresh row counts."""
        ticks = 0
        while True:
            await asyncio.sleep(self.settings.health_interval)
            for shard in self.shards:
                try:
                    if shard.healthy and shard.index in self._connected:
                        await shard.ping()
                    else:
                        await self._bring_up(shard)
                    if shard.healthy and ticks % 10 == 0:
                        count = await shard.fetchrow("SELECT count(*) AS n FROM items")
                        self.rows[shard.index] = int(count["n"]) if count else 0
                except ShardUnavailable:
                    continue  # marked down by the shard itself
                except MigrationError as exc:
                    shard.mark_down(str(exc))
                    log.error("%s", exc)
            ticks += 1

    async def readiness(self) -> Readiness:
        """Every shard's health: "shard.0: ok; shard.1: down (reason)"."""
        detail = "; ".join(
            f"{s.name}: ok" if s.healthy else f"{s.name}: down ({s.last_error})"
            for s in self.shards
        )
        down = sum(not s.healthy for s in self.shards)
        if not down:
            return Readiness("ok", detail)
        return Readiness("down" if down == len(self.shards) else "degraded", detail)

    def state(self) -> dict[str, Any]:
        return {
            "logical_shards": self.shards.placement.logical_shards,
            "shards": [
                {
                    "name": s.name,
                    "dsn": s.dsn,
                    "dialect": s.backend.dialect,
                    "healthy": s.healthy,
                    "error": s.last_error,
                    "schema_version": s.schema_version,
                    "rows": self.rows.get(s.index),
                    "queries": s.queries,
                    "query_seconds": round(s.query_seconds, 6),
                    "logical_shards": count,
                    "group_commit": _group_commit(s.backend.writes),
                }
                for s, count in zip(
                    self.shards, self.shards.placement.logical_counts(), strict=True
                )
            ],
        }

    def openapi_paths(self) -> dict[str, Any]:
        return items_openapi.OPENAPI_PATHS

    def openapi_schemas(self) -> dict[str, Any]:
        return {"Item": items_openapi.ITEM_SCHEMA}


def _group_commit(group: GroupCommit | None) -> dict[str, Any] | None:
    """How the shard's writes were batched: write transactions, statements, the largest."""
    if group is None:
        return None
    stats = group.stats
    return {
        "batches": stats.batches,
        "statements": stats.statements,
        "per_batch": round(stats.statements / stats.batches, 2) if stats.batches else None,
        "largest": stats.largest,
        "pending": group.pending,
        "withdrawn": stats.withdrawn,
        "failed": stats.failed,
    }
