"""The cache backend interface: what Keel needs from a store, and nothing more.

Values are opaque bytes with a TTL. Besides get/set/delete, a backend offers a
*lease* — the right to fill a missing key — so that a cold key is loaded by one
caller across every instance, and so that a fill racing with an invalidation
loses: `delete` drops the key's lease too, and `fill` stores only while the
caller still holds it. Without that, a read that fetched version 1 just before
a write could store version 1 just after the write's invalidation, and serve
it until the TTL ran out.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import NamedTuple


class LeaseStep(NamedTuple):
    """A lease as the keys and arguments of the Redis lease script
    (`app.cache.redis_store.LEASE_SCRIPT`), for a caller that runs that script
    inside a script call of its own (see `app.cache.read_ahead`)."""

    keys: list[str]
    args: list[object]


class CacheBackend(ABC):
    name: str
    # What a failed call raises: the errors the cache counts against its guard.
    errors: tuple[type[BaseException], ...] = ()

    @abstractmethod
    async def get(self, key: str) -> bytes | None:
        """The value, or None when missing, expired or not trusted."""

    @abstractmethod
    async def set(self, key: str, value: bytes, ttl: float) -> None:
        """Store unconditionally (and void any lease on the key)."""

    @abstractmethod
    async def delete(self, keys: Sequence[str]) -> None:
        """Remove the keys and their leases."""

    @abstractmethod
    async def lease(self, key: str, token: str, lease_ttl: float) -> bytes | bool:
        """The value if present; else try to take the key's lease: True if taken
        now under `token`, False if another caller holds it."""

    @abstractmethod
    async def fill(self, key: str, token: str, value: bytes, ttl: float) -> bool:
        """Store `value` only if the lease `token` still holds; release it. False if voided."""

    @abstractmethod
    async def distrust_older(self) -> None:
        """After an outage: stop trusting values stored before now (they may have
        missed an invalidation)."""

    @abstractmethod
    async def clear(self) -> None:
        """Remove every key of this cache."""

    def lease_step(self, key: str, token: str, lease_ttl: float) -> LeaseStep | None:
        """`lease` as a step another script call can run; None when this backend has none."""
        return None

    def leased(self, result: object) -> bytes | bool:
        """What the reply of a `lease_step` means, as `lease` would have returned it."""
        raise NotImplementedError(f"the {self.name} backend has no lease step")

    def entries(self) -> int | None:
        """How many entries, when that is known without asking a server."""
        return None
