"""Items on the shards: each item lives on the shard that owns its id.

Writes are single-shard transactions; an optimistic version check makes
conflicting conditional writes safe (exactly one wins). A list reads about
each shard's share of the next page from every shard at once and merges them
by id (`app.items.listing`), so a page is one stable order across all shards;
if a shard cannot answer, the list fails naming it rather than returning a
silently partial page.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from app.core.events import EventHook
from app.items.listing import merged_page
from app.items.model import IdGenerator, ItemEvent, ItemInput, item_from_row, now_iso
from app.sharding.backend import Row
from app.sharding.shards import ShardSet

_COLUMNS = "id, name, price, tags, version, created_at, updated_at"
_FIRST = f"SELECT {_COLUMNS} FROM items ORDER BY id LIMIT $1"
_AFTER = f"SELECT {_COLUMNS} FROM items WHERE id > $1 ORDER BY id LIMIT $2"


class Conflict(Exception):
    """The item's version is not the one the client expected (or it does not exist)."""


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    next_after: str | None


class ItemStore:
    def __init__(self, shards: ShardSet) -> None:
        self.shards = shards
        self.events: EventHook[ItemEvent] = EventHook("items")
        self.new_id = IdGenerator()

    async def get(self, item_id: str) -> dict[str, Any] | None:
        row = await self.shards.for_key(item_id).fetchrow(
            f"SELECT {_COLUMNS} FROM items WHERE id = $1", item_id
        )
        return item_from_row(row) if row else None

    async def create(self, data: ItemInput) -> dict[str, Any]:
        item_id = self.new_id()
        now = now_iso()
        async with self.shards.for_key(item_id).transaction() as tx:
            row = await tx.fetchrow(
                f"INSERT INTO items ({_COLUMNS}) VALUES ($1, $2, $3, $4, 1, $5, $5)"
                f" RETURNING {_COLUMNS}",
                item_id,
                data.name,
                data.price,
                json.dumps(list(data.tags)),
                now,
            )
        assert row is not None
        item = item_from_row(row)
        await self.events.emit(ItemEvent("created", item_id, item))
        return item

    async def put(
        self, item_id: str, data: ItemInput, *, expected_version: int | None = None
    ) -> tuple[dict[str, Any], bool]:
        """Create or replace; returns (item, created).

        With `expected_version`, replace only that version (else `Conflict`);
        without it, replace whatever is there, or create.
        """
        now = now_iso()
        tags = json.dumps(list(data.tags))
        async with self.shards.for_key(item_id).transaction() as tx:
            if expected_version is None:
                row = await tx.fetchrow(
                    f"INSERT INTO items ({_COLUMNS}) VALUES ($1, $2, $3, $4, 1, $5, $5)"
                    " ON CONFLICT (id) DO UPDATE SET name = excluded.name,"
                    " price = excluded.price, tags = excluded.tags,"
                    " version = items.version + 1, updated_at = excluded.updated_at"
                    f" RETURNING {_COLUMNS}",
                    item_id,
                    data.name,
                    data.price,
                    tags,
                    now,
                )
            else:
                row = await tx.fetchrow(
                    "UPDATE items SET name = $2, price = $3, tags = $4,"
                    " version = version + 1, updated_at = $5"
                    f" WHERE id = $1 AND version = $6 RETURNING {_COLUMNS}",
                    item_id,
                    data.name,
                    data.price,
                    tags,
                    now,
                    expected_version,
                )
                if row is None:
                    raise Conflict(item_id)
        assert row is not None
        item = item_from_row(row)
        created = item["version"] == 1
        await self.events.emit(ItemEvent("created" if created else "updated", item_id, item))
        return item, created

    async def delete(self, item_id: str, *, expected_version: int | None = None) -> bool:
        """Delete; False if there was nothing to delete. `Conflict` on a stale version."""
        async with self.shards.for_key(item_id).transaction() as tx:
            if expected_version is None:
                deleted = await tx.execute("DELETE FROM items WHERE id = $1", item_id)
            else:
                deleted = await tx.execute(
                    "DELETE FROM items WHERE id = $1 AND version = $2", item_id, expected_version
                )
                if not deleted:
                    raise Conflict(item_id)
        if deleted:
            await self.events.emit(ItemEvent("deleted", item_id))
        return bool(deleted)

    async def list(self, limit: int, after: str | None) -> Page:
        """The next `limit` items in id order across every shard, after id `after`."""
        shards = self.shards.shards

        async def fetch(index: int, since: str | None, count: int) -> list[Row]:
            # A shard that cannot answer fails the page (gathered: at once).
            if since is None:
                return await shards[index].fetch(_FIRST, count)
            return await shards[index].fetch(_AFTER, since, count)

        merged = await merged_page(fetch, len(shards), limit + 1, after)
        rows = merged[:limit]
        more = len(merged) > limit
        return Page(
            items=[item_from_row(row) for row in rows],
            next_after=rows[-1]["id"] if more and rows else None,
        )


ITEMS = web.AppKey("keel.items", ItemStore)
