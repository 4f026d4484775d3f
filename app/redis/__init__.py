"""Redis: the shared client and heartbeat (`RedisService`, published as `app[REDIS]`), the
request-path batcher and its pipelined connection, and `[redis]`'s settings."""

from app.redis.batcher import RedisBatcher
from app.redis.service import REDIS, REDIS_ERRORS, RedisService
from app.redis.settings import RedisSettings

__all__ = ["REDIS", "REDIS_ERRORS", "RedisBatcher", "RedisService", "RedisSettings"]
