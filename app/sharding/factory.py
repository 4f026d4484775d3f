"""Building the configured shards (not connected): the plugin's, and `run.py migrate/reshard`'s."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry

from app.breakers import BreakerRegistry
from app.sharding.backend import ShardBackend
from app.sharding.dsn import ShardDsn
from app.sharding.placement import Placement
from app.sharding.postgres import PostgresBackend
from app.sharding.settings import ShardingSettings
from app.sharding.shards import Shard, ShardMetrics, ShardSet
from app.sharding.sqlite import SQLiteBackend


def make_backend(name: str, dsn: str, settings: ShardingSettings, data_path: Path) -> ShardBackend:
    """The backend a DSN names; relative SQLite paths resolve against `data_path`."""
    parsed = ShardDsn.parse(dsn, data_path)
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
    settings: ShardingSettings,
    data_path: Path,
    registry: CollectorRegistry,
    breakers: BreakerRegistry | None = None,
) -> ShardSet:
    """The configured shards, not yet connected (also used by `run.py migrate/reshard`).

    With `breakers`, shard n goes through the breaker `shard.<n>`.
    """
    metrics = ShardMetrics(registry)
    shards = [
        Shard(
            index,
            dsn,
            make_backend(f"shard.{index}", dsn, settings, data_path),
            metrics,
            query_timeout=settings.query_timeout,
            retry_after=settings.retry_after,
            breaker=breakers.get(f"shard.{index}") if breakers is not None else None,
        )
        for index, dsn in enumerate(settings.shards)
    ]
    return ShardSet(shards, Placement(len(shards), settings.logical_shards))
