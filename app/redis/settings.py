"""`[redis]`: the shared Redis of every instance ("" = none: everything stays in-process)."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.core.config_schema import SecretUrl, check, positive


def _redis_url(value: SecretUrl) -> str | None:
    url = value.reveal()
    if url and not url.startswith(("redis://", "rediss://", "unix://")):
        return f'expected "" or a URL like "redis://127.0.0.1:6379/0", got "{value.redacted}"'
    return None


@dataclass(frozen=True)
class RedisSettings:
    """`[redis]`."""

    url: SecretUrl = field(default=SecretUrl(""), metadata=check(_redis_url))
    key_prefix: str = "keel:"
    socket_timeout: float = field(default=0.25, metadata=check(positive))
    connect_timeout: float = field(default=0.5, metadata=check(positive))
    max_connections: int = field(default=64, metadata=check(positive))
    heartbeat_interval: float = field(default=2.0, metadata=check(positive))
    heartbeat_ttl: float = field(default=6.0, metadata=check(positive))
    # Seconds the minimal guard refuses Redis calls after a failure (when the
    # breakers plugin is not enabled; with it, the `redis` breaker decides).
    retry_after: float = field(default=1.0, metadata=check(positive))
