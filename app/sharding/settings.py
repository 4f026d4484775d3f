"""`[sharding]`: the physical shards (DSNs), placement and timeouts."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.core.config_schema import check, positive
from app.sharding.dsn import check_dsn
from app.sharding.placement import DEFAULT_LOGICAL_SHARDS

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
