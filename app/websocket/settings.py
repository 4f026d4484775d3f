"""`[websocket]`: limits of the `/ws` endpoint."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.core.config_schema import check, not_negative, positive
from app.ratelimit.limits import check_limit
from app.websocket.channels import check_patterns


def _origins(values: tuple[str, ...]) -> str | None:
    for value in values:
        if value != "*" and (not value.startswith(("http://", "https://")) or value.endswith("/")):
            return f'expected "*" or origins like "https://example.com", got "{value}"'
    return None


@dataclass(frozen=True)
class WebSocketSettings:
    """`[websocket]`.

    `max_message_size`: largest client frame in bytes (larger: close 1009).
    `heartbeat`: seconds between pings to each client; a client that does not
    answer within half of it is closed (0 = no pings).
    `allowed_origins`: browser origins that may connect besides the page's own
    ("*" = any); a handshake from another origin gets 403.
    `publish_channels`: patterns of channels clients may publish on ("chat.*");
    plugins add theirs with `app[WEBSOCKET].allow_publish`.
    `send_queue`: frames queued per client while its socket is full; one more
    closes it with 1013.
    `publish_limit`: publish ops per connection ("N/second|minute|hour|day").
    `max_subscriptions`: channels one connection may subscribe to.
    `private_channels`: patterns of channels clients may neither subscribe to
    nor ask the presence of (server code still publishes on them); plugins add
    theirs with `app[WEBSOCKET].hide`.
    `history_size`: messages kept per channel for clients that reconnect with
    `since` (0 = no history: messages carry no `offset` or `epoch`).
    `history_ttl`: seconds a channel's history is kept after its last publish.
    Both apply at startup (a reload does not resize the history).
    """

    max_message_size: int = field(default=65536, metadata=check(positive))
    heartbeat: float = field(default=30.0, metadata=check(not_negative))
    allowed_origins: tuple[str, ...] = field(default=(), metadata=check(_origins))
    publish_channels: tuple[str, ...] = field(default=(), metadata=check(check_patterns))
    send_queue: int = field(default=256, metadata=check(positive))
    publish_limit: str = field(default="20/second", metadata=check(check_limit))
    max_subscriptions: int = field(default=100, metadata=check(positive))
    private_channels: tuple[str, ...] = field(default=(), metadata=check(check_patterns))
    history_size: int = field(default=100, metadata=check(not_negative))
    history_ttl: float = field(default=300.0, metadata=check(positive))
