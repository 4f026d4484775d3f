"""`[upstreams]` and `[upstreams.<name>]`: where `/api/upstream/<name>/...` goes."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from app.core.config_schema import check, positive, rest_of_table


def _http_url(value: str) -> str | None:
    if value.startswith(("http://", "https://")):
        return None
    return f'expected a URL like "http://127.0.0.1:9000/base", got "{value}"'


@dataclass(frozen=True)
class UpstreamSettings:
    """`[upstreams.<name>]`: where `/api/upstream/<name>/...` goes."""

    url: str = field(default="http://127.0.0.1:9000", metadata=check(_http_url))
    # Seconds to connect, send the request and get the response headers (and
    # the longest pause while reading the body); over it: 504 upstream_timeout.
    timeout: float = field(default=10.0, metadata=check(positive))


@dataclass(frozen=True)
class UpstreamsSettings:
    """`[upstreams]`: the shared connection pool, and each `[upstreams.<name>]`."""

    max_connections: int = field(default=100, metadata=check(positive))
    max_connections_per_upstream: int = field(default=20, metadata=check(positive))
    upstreams: Mapping[str, UpstreamSettings] = field(
        default_factory=lambda: MappingProxyType({}), metadata=rest_of_table()
    )
