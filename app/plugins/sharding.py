"""The `sharding` plugin: the physical shards, their migrations and health, and the items API.

Publishes `app[SHARDS]` (a `ShardSet`). At startup every shard is connected
and, with `auto_migrate = true`, migrated; a shard ahead of the code stops
startup. A shard that cannot be reached at startup starts marked down: only
its keys fail (503) until the health loop reaches it, migrates it and brings
it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from app.api import items as items_api
from app.breakers import BreakerRegistry
from app.config import Config
from app.core.config_schema import check, positive
from app.plugins import BasePlugin, Readiness
from app.plugins.breakers import BREAKERS
from app.plugins.metrics import METRICS
from app.sharding.backend import ShardBackend, ShardUnavailable
from app.sharding.dsn import ShardDsn, check_dsn
from app.sharding.migrations import MigrationError, migrate, schema_version
from app.sharding.placement import DEFAULT_LOGICAL_SHARDS, Placement
from app.sharding.postgres import PostgresBackend
from app.sharding.shards import Shard, ShardMetrics, ShardSet
from app.sharding.sqlite import SQLiteBackend

log = logging.getLogger("keel.sharding")

DEFAULT_SHARDS = ("sqlite:///shard0.db", "sqlite:///shard1.db", "sqlite:///shard2.db")


def _dsns(values: tuple[str, ...]) -> str | None:
    if not values:
        return "expected at least one shard DSN"
    for value in values:
        if problem := check_dsn(value):
            return f'"{value}": {problem}'
    if len(set(values)) != len(values):
        return "a shard is listed twice"
    return None


@dataclass(frozen=True)
class ShardingSettings:
    """`[sharding]`."""

    shards: tuple[str, ...] = field(default=DEFAULT_SHARDS, metadata=check(_dsns))
    logical_shards: int = field(default=DEFAULT_LOGICAL_SHARDS, metadata=check(positive))
    auto_migrate: bool = True
    pool_size: int = field(default=10, metadata=check(positive))
    connect_timeout: float = field(default=2.0, metadata=check(positive))
    query_timeout: float = field(default=5.0, metadata=check(positive))
    retry_after: float = field(default=2.0, metadata=check(positive))
    health_interval: float = field(default=1.0, metadata=check(positive))


def make_backend(name: str, dsn: str, settings: ShardingSettings, config: Config) -> ShardBackend:
    parsed = ShardDsn.parse(dsn, config.server.data_path)
    if parsed.dialect == "sqlite":
        return SQLiteBackend(name, parsed.target, busy_timeout=settings.query_timeout)
    return PostgresBackend(
        name,
        parsed.target,
        pool_size=settings.pool_size,
        connect_timeout=settings.connect_timeout,
        query_timeout=settings.query_timeout,
    )


def build_shards(
    config: Config, registry: CollectorRegistry, breakers: BreakerRegistry | None = None
) -> ShardSet:
    """The configured shards, not yet connected (also used by `run.py migrate/reshard`).

    With `breakers`, shard n goes through the breaker `shard.<n>`.
    """
    settings = config.section(ShardingSettings)
    metrics = ShardMetrics(registry)
    shards = [
        Shard(
            index,
            dsn,
            make_backend(f"shard.{index}", dsn, settings, config),
            metrics,
            query_timeout=settings.query_timeout,
            retry_after=settings.retry_after,
            breaker=breakers.get(f"shard.{index}") if breakers is not None else None,
        )
        for index, dsn in enumerate(settings.shards)
    ]
    return ShardSet(shards, Placement(len(shards), settings.logical_shards))


SHARDS = web.AppKey("keel.shards", ShardSet)


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
    optional = ("metrics", "breakers")
    settings = ShardingSettings

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.options = config.section(ShardingSettings)
        self._connected: set[int] = set()
        self.rows: dict[int, int | None] = {}

    def setup(self, app: web.Application) -> None:
        metrics = app.get(METRICS)
        registry = metrics.registry if metrics is not None else CollectorRegistry()
        self.shards = build_shards(self.config, registry, app.get(BREAKERS))
        app[SHARDS] = self.shards
        items_api.setup(app, self.shards)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: web.Application) -> AsyncIterator[None]:
        try:
            await _all_or_none(self._bring_up(shard) for shard in self.shards)
            watching = asyncio.create_task(self._watch(), name="keel.sharding.health")
            try:
                yield
            finally:
                watching.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watching
        finally:
            await asyncio.gather(*(self._close(s) for s in self.shards))

    async def _close(self, shard: Shard) -> None:
        """Close one shard; one that does not answer must not hang shutdown."""
        try:
            async with asyncio.timeout(self.options.connect_timeout * 2):
                await shard.backend.close()
        except TimeoutError:
            log.error(
                "%s did not close within %.1fs; abandoning it",
                shard.name,
                self.options.connect_timeout * 2,
            )

    async def _bring_up(self, shard: Shard) -> None:
        """Connect and migrate; a shard out of reach is marked down, one ahead stops startup."""
        try:
            if shard.index not in self._connected:
                async with asyncio.timeout(self.options.connect_timeout * 2):
                    await shard.backend.open()
                self._connected.add(shard.index)
            if self.options.auto_migrate:
                report = await migrate(shard.name, shard.backend)
                if report.applied:
                    log.info("%s: applied %s", shard.name, ", ".join(report.applied))
            shard.schema_version = await schema_version(shard.backend)
        except (ShardUnavailable, TimeoutError) as exc:
            reason = exc.reason if isinstance(exc, ShardUnavailable) else "connect timed out"
            if shard.healthy:
                log.warning("%s (%s) is unavailable: %s", shard.name, shard.dsn, reason)
            shard.mark_down(reason)
            return
        except MigrationError:
            raise
        if not shard.healthy:
            log.info("%s is available again", shard.name)
        shard.mark_up()

    async def _watch(self) -> None:
        """Ping every shard; bring back those that were down; refresh row counts."""
        ticks = 0
        while True:
            await asyncio.sleep(self.options.health_interval)
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
                    "logical_shards": count,
                }
                for s, count in zip(
                    self.shards, self.shards.placement.logical_counts(), strict=True
                )
            ],
        }

    def openapi_paths(self) -> dict[str, Any]:
        return items_api.OPENAPI_PATHS

    def openapi_schemas(self) -> dict[str, Any]:
        return {"Item": items_api.ITEM_SCHEMA}
