"""The rate-limit response headers, with everything constant per policy precomputed.

draft-ietf-httpapi-ratelimit-headers-10 structured fields:

    RateLimit-Policy: "default";q=100;w=1      the quota policy (constant)
    RateLimit: "default";r=42;t=1              remaining now, seconds to reset

plus, for clients written against the older drafts, `RateLimit-Limit`,
`RateLimit-Remaining` and `RateLimit-Reset` (seconds). A 429 adds
`Retry-After` (set by `app.errors.RateLimited`).
"""

from __future__ import annotations

from multidict import CIMultiDict, istr

from app.ratelimit.algorithm import Decision
from app.ratelimit.limits import Limit

POLICY = istr("RateLimit-Policy")
RATELIMIT = istr("RateLimit")
LIMIT = istr("RateLimit-Limit")
REMAINING = istr("RateLimit-Remaining")
RESET = istr("RateLimit-Reset")


def _sf_string(value: str) -> str:
    """An RFC 8941 sf-string: printable ASCII, quotes and backslashes escaped."""
    if not value.isascii() or not value.isprintable():
        raise ValueError(f"a policy name must be printable ASCII, got {value!r}")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def reset_seconds(reset_us: int) -> int:
    """Whole seconds, rounded up (never invite an early retry), at least 1."""
    return max(1, -(-reset_us // 1_000_000))


class PolicyHeaders:
    """The header values of one policy; `apply` writes them for one decision."""

    __slots__ = ("_limit", "_policy", "_prefix")

    def __init__(self, name: str, limit: Limit) -> None:
        quoted = _sf_string(name)
        self._policy = f"{quoted};q={limit.quota};w={limit.window}"
        self._prefix = f"{quoted};r="
        self._limit = str(limit.quota)

    def apply(self, headers: CIMultiDict[str], decision: Decision) -> None:
        reset = str(reset_seconds(decision.reset_us))
        remaining = str(decision.remaining)
        headers[POLICY] = self._policy
        headers[RATELIMIT] = f"{self._prefix}{remaining};t={reset}"
        headers[LIMIT] = self._limit
        headers[REMAINING] = remaining
        headers[RESET] = reset
