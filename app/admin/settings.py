"""`[admin]`: who may log in to the dashboard, for how long, and how often it is pushed."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.core.config_schema import Secret, check, positive
from app.ratelimit.limits import Limit, check_limit, parse_limit

# The fastest push the server allows, whatever `push_interval` says: a page
# cannot make an instance build and send state more often than this.
MIN_PUSH_INTERVAL = 0.25


@dataclass(frozen=True)
class AdminSettings:
    """`[admin]` (see config.toml)."""

    # Operator login ("" = a random token generated at startup, printed once on stderr).
    token: Secret = field(default_factory=lambda: Secret(""))
    # Read-only login ("" = none).
    viewer_token: Secret = field(default_factory=lambda: Secret(""))
    # Seconds a session lives from its login.
    session_ttl: int = field(default=28800, metadata=check(positive))
    # Seconds between state pushes on /admin/ws (at least MIN_PUSH_INTERVAL).
    push_interval: float = field(default=1.0, metadata=check(positive))
    # Failed logins allowed per client address; past it 429 with Retry-After.
    login_limit: str = field(default="5/minute", metadata=check(check_limit))
    # Audit entries kept (the oldest are deleted beyond it).
    audit_entries: int = field(default=10_000, metadata=check(positive))

    @property
    def push_seconds(self) -> float:
        return max(MIN_PUSH_INTERVAL, self.push_interval)

    @property
    def login_limit_parsed(self) -> Limit:
        return parse_limit(self.login_limit)
