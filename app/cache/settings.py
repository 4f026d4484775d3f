"""`[cache]`: TTLs, the in-process store's size, leases, and the optional local tier."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.cache.cache import CacheTimes
from app.core.config_schema import check, not_negative, positive


@dataclass(frozen=True)
class CacheSettings:
    """`[cache]`."""

    ttl: float = field(default=60.0, metadata=check(positive))
    negative_ttl: float = field(default=5.0, metadata=check(not_negative))
    max_entries: int = field(default=10_000, metadata=check(positive))
    lease_seconds: float = field(default=2.0, metadata=check(positive))
    wait_seconds: float = field(default=0.2, metadata=check(not_negative))
    max_pending_invalidations: int = field(default=10_000, metadata=check(positive))
    # With Redis: seconds an entry may also be kept in process memory (0 = no such tier).
    local_ttl: float = field(default=0.0, metadata=check(not_negative))

    @property
    def times(self) -> CacheTimes:
        """What the cache reads on every lookup (replaced as a whole on SIGHUP)."""
        return CacheTimes(
            ttl=self.ttl,
            negative_ttl=self.negative_ttl,
            lease_seconds=self.lease_seconds,
            wait_seconds=self.wait_seconds,
        )
