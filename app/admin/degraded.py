"""Which dependencies are degraded, read from the plugins' state, and since when.

A dependency is what a breaker is named after — `redis`, `amqp`, `shard.<n>`,
`upstream.<name>` — and it is degraded when its breaker refuses calls (open,
half-open, forced open), or when the plugin that owns it says it cannot reach
it (Redis's heartbeat failing, a shard marked down, the broker disconnected).
A plugin whose readiness is not ok for another reason gets a banner of its own
(`plugin.<name>`). The page shows one banner per dependency with the instances
that see it and since when.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

REFUSING = ("open", "half_open", "forced_open")


def find_degraded(
    plugins: Mapping[str, Any], readiness: Mapping[str, Mapping[str, str]]
) -> dict[str, str]:
    """dependency -> why, for one instance."""
    found: dict[str, str] = {}
    breakers = plugins.get("breakers") or {}
    for breaker in breakers.get("breakers") or []:
        if breaker.get("state") in REFUSING:
            why = f"circuit {breaker['state'].replace('_', ' ')}"
            if breaker.get("failure_rate"):
                why += f" ({breaker['failure_rate']}% of calls failed)"
            found[breaker["name"]] = why
    redis = plugins.get("redis") or {}
    if redis.get("enabled") and redis.get("last_error"):
        found.setdefault("redis", f"unreachable: {redis['last_error']}")
    for shard in (plugins.get("sharding") or {}).get("shards") or []:
        if not shard.get("healthy", True):
            found.setdefault(shard["name"], f"down: {shard.get('error') or 'unreachable'}")
    queue = plugins.get("queue") or {}
    if queue.get("backend") == "rabbitmq" and not queue.get("connected", True):
        found.setdefault("amqp", f"unreachable: {queue.get('error') or 'connecting'}")
    if not found:
        for name, check in readiness.items():
            if check.get("status") != "ok":
                found[f"plugin.{name}"] = f"{check.get('status')}: {check.get('detail', '')}"
    return found


class DegradedTracker:
    """Remembers since when each dependency has been degraded on this instance."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._since: dict[str, float] = {}

    def update(self, found: Mapping[str, str]) -> list[dict[str, Any]]:
        now = self.clock()
        self._since = {name: self._since.get(name, now) for name in found}
        return [
            {"name": name, "detail": detail, "since": self._since[name]}
            for name, detail in sorted(found.items())
        ]


def merge(instances: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One entry per degraded dependency across instances: who sees it, since the earliest."""
    merged: dict[str, dict[str, Any]] = {}
    for instance in instances:
        if instance.get("stale"):
            continue  # what a silent instance last said is no longer news
        for item in instance.get("degraded") or []:
            entry = merged.setdefault(
                item["name"],
                {
                    "name": item["name"],
                    "detail": item["detail"],
                    "since": item["since"],
                    "instances": [],
                },
            )
            entry["since"] = min(entry["since"], item["since"])
            entry["instances"].append(instance["id"])
    return sorted(merged.values(), key=lambda e: (e["since"], e["name"]))
