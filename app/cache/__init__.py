"""The cache: one small backend interface, an in-process and a Redis backend, cache-aside
(`Cache`, published as `app[CACHE]`), and `[cache]`'s settings."""

from app.cache.cache import CACHE, CACHE_STATUS, Cache, CacheMetrics, CacheTimes, Lookup
from app.cache.settings import CacheSettings

__all__ = [
    "CACHE",
    "CACHE_STATUS",
    "Cache",
    "CacheMetrics",
    "CacheSettings",
    "CacheTimes",
    "Lookup",
]
