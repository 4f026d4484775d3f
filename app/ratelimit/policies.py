"""Which limit applies to which route, decided once per route and remembered.

A `PolicyTable` is built from `[ratelimit]` (and rebuilt on SIGHUP). The
default policy covers every API route — every route whose template starts
with `/api/`, and unmatched requests under `/api/` (so probing for routes
spends budget too). A rule (route template + method) replaces the default on
the routes it names, and may name routes outside `/api/` (a login form).
`/healthz`, `/readyz` and `/metrics` are never limited.

The answer for a route object is computed on its first request and cached in
a dict keyed by the route: per request, the cost is one dict lookup.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.web_urldispatcher import AbstractRoute

from app.core.client_address import client_address
from app.ratelimit.headers import PolicyHeaders
from app.ratelimit.limits import Limit

EXEMPT = frozenset({"/healthz", "/readyz", "/metrics"})
API_PREFIX = "/api/"
ANY_METHOD = "*"

# Redis Cluster treats {...} as a hash tag: keep braces and spaces out of keys.
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9._/-]")
# An API key longer than this is stored as its hash: keys stay short, secrets out of Redis.
_MAX_RAW_KEY = 64


@dataclass(frozen=True, slots=True)
class Policy:
    """A named limit plus everything per-request work needs, precomputed."""

    name: str
    limit: Limit
    bucket: str = field(init=False, compare=False)
    headers: PolicyHeaders = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        # The limit is part of the bucket: a changed limit starts a fresh budget
        # (a stored TAT means nothing under another interval).
        safe = _KEY_UNSAFE.sub("_", self.name)
        object.__setattr__(self, "bucket", f"{safe}:{self.limit.quota}/{self.limit.window}:")
        object.__setattr__(self, "headers", PolicyHeaders(self.name, self.limit))


@dataclass(frozen=True, slots=True)
class Rule:
    """`[[ratelimit.rules]]`: `limit` on `method` requests to the route template `path`."""

    path: str
    method: str
    policy: Policy

    def matches(self, template: str, method: str) -> bool:
        if template != self.path:
            return False
        if self.method == ANY_METHOD or self.method == method:
            return True
        return self.method == "GET" and method == "HEAD"  # aiohttp adds HEAD next to GET


# Cache marker for routes registered for any method ("*"): decided per request method.
_PER_METHOD = object()


class PolicyTable:
    """The default policy, the rules, the client key; the per-route cache."""

    def __init__(self, default: Policy, rules: Sequence[Rule], key: str) -> None:
        self.default = default
        # A rule naming one method beats a rule for every method on the same path.
        self.rules = sorted(rules, key=lambda r: r.method == ANY_METHOD)
        self.key = key
        self.header = key.removeprefix("header:") if key.startswith("header:") else None
        self._by_route: dict[AbstractRoute, Policy | object | None] = {}
        self._by_route_method: dict[tuple[AbstractRoute, str], Policy | None] = {}

    def policy_for(self, request: web.Request) -> Policy | None:
        """The policy limiting `request`, or None when it is not limited."""
        route = request.match_info.route
        policy = self._by_route.get(route, self)  # `self` as the "not cached yet" marker
        if policy is self:
            return self._first_time(request, route)
        if policy is _PER_METHOD:
            return self._per_method(route, request.method)
        return policy  # type: ignore[return-value]

    def _first_time(self, request: web.Request, route: AbstractRoute) -> Policy | None:
        resource = route.resource
        if resource is None:
            # The router's 404/405: a new route object per request, never cached.
            return self.default if request.path.startswith(API_PREFIX) else None
        if route.method == ANY_METHOD:
            self._by_route[route] = _PER_METHOD
            return self._per_method(route, request.method)
        policy = self.match(resource.canonical, route.method)
        self._by_route[route] = policy
        return policy

    def _per_method(self, route: AbstractRoute, method: str) -> Policy | None:
        key = (route, method)
        if key not in self._by_route_method:
            assert route.resource is not None
            self._by_route_method[key] = self.match(route.resource.canonical, method)
        return self._by_route_method[key]

    def match(self, template: str, method: str) -> Policy | None:
        """The policy for a route template and method (uncached)."""
        if template in EXEMPT:
            return None
        for rule in self.rules:
            if rule.matches(template, method):
                return rule.policy
        return self.default if template.startswith(API_PREFIX) else None

    def client_key(self, request: web.Request) -> str:
        """The budget's owner: the API key header when configured and sent, else the address."""
        if self.header is not None:
            value = request.headers.get(self.header)
            if value:
                if len(value) > _MAX_RAW_KEY:
                    value = hashlib.sha256(value.encode()).hexdigest()
                return "key:" + value
        return "ip:" + client_address(request)


def display_key(client_key: str) -> str:
    """A client key fit for the dashboard: addresses shown, API keys masked."""
    if client_key.startswith("key:"):
        return "key:" + client_key[4:8] + "…"
    return client_key
