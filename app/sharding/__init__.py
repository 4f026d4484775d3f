"""Sharded SQL storage: placement, backends (SQLite, PostgreSQL), migrations, resharding.

Keys hash onto a fixed number of logical shards; logical shards map onto the
configured physical shards by rendezvous hashing (see `placement`). Each
physical shard is a `ShardBackend` behind a `Shard` that counts queries, times
them out and fails fast while the shard is down.
"""

from app.sharding.backend import ShardUnavailable
from app.sharding.settings import ShardingSettings
from app.sharding.shards import SHARDS, Shard, ShardSet

__all__ = ["SHARDS", "Shard", "ShardSet", "ShardUnavailable", "ShardingSettings"]
