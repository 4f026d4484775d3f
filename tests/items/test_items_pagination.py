"""Listing pages through every shard in one stable order, also while items are created."""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from app.sharding import SHARDS

pytestmark = pytest.mark.parametrize("layout", ["sqlite", "postgresql", "mixed"])

PAGE = 7
LAMP = {"name": "lamp", "price": 1.5}
# Client-chosen ids around the server's (which are digits and capitals):
# bytewise these interleave differently than under any locale's collation.
CHOSEN = ["-x", ".y", "0", "9z", ":z", "A", "A-1", "A.1", "A:1", "A_1"]
CHOSEN += ["B", "Zz", "_", "_b", "a", "a-b", "a.b", "ab", "b", "z"]


async def create_many(client: TestClient, count: int) -> list[str]:
    ids: list[str] = []
    for start in range(0, count, 20):
        responses = await asyncio.gather(
            *(
                client.post("/api/items", json={**LAMP, "name": f"n{i}"})
                for i in range(start, min(start + 20, count))
            )
        )
        assert {r.status for r in responses} == {201}
        ids += [(await r.json())["id"] for r in responses]
    return ids


async def put_chosen(client: TestClient, ids: list[str]) -> None:
    responses = await asyncio.gather(*(client.put(f"/api/items/{i}", json=LAMP) for i in ids))
    assert {r.status for r in responses} == {201}


async def pages(
    client: TestClient,
    limit: int = PAGE,
    between: Callable[[], Awaitable[None]] | None = None,
) -> list[list[dict[str, Any]]]:
    """Every page, first to last, following next_cursor until it is null."""
    result: list[list[dict[str, Any]]] = []
    cursor = None
    while True:
        if result and between is not None:
            await between()
        params = {"limit": str(limit)} | ({"cursor": cursor} if cursor else {})
        response = await client.get("/api/items", params=params)
        assert response.status == 200, await response.text()
        page = await response.json()
        result.append(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return result
        assert len(result) < 1000, "paging does not end"


async def test_paging_returns_every_item_once_in_one_stable_order(client: TestClient) -> None:
    ids = await create_many(client, 100) + CHOSEN
    await put_chosen(client, CHOSEN)
    assert len(ids) == 120

    shards = client.app[SHARDS]
    per_shard = []
    for shard in shards:
        held = [row["id"] for row in await shard.fetch("SELECT id FROM items")]
        assert all(shards.placement.shard_of(i) == shard.index for i in held)
        per_shard.append(held)
    assert all(per_shard), f"items per shard: {[len(h) for h in per_shard]}"
    assert sorted(i for held in per_shard for i in held) == sorted(ids)

    first = await pages(client)
    assert len(first) == math.ceil(120 / PAGE)
    assert all(len(page) == PAGE for page in first[:-1])
    seen = [item["id"] for page in first for item in page]
    assert len(seen) == len(set(seen)) == 120
    assert seen == sorted(ids, key=str.encode)
    assert all(set(item) >= {"id", "name", "price", "version"} for page in first for item in page)

    again = await pages(client)
    assert [[item["id"] for item in page] for page in again] == [
        [item["id"] for item in page] for page in first
    ]


async def test_paging_while_items_are_created_sees_each_item_once_in_order(
    client: TestClient,
) -> None:
    before = set(await create_many(client, 60) + CHOSEN[::2])
    await put_chosen(client, CHOSEN[::2])
    created: list[str] = []
    made = asyncio.Event()  # set after each create, and for good when the creator stops
    stop = asyncio.Event()

    async def keep_creating() -> None:
        # New server ids sort after every existing one; "-k…" sorts first of all
        # and "zz…" last, so new items land behind, among and ahead of the pages.
        try:
            for n in range(90):
                if stop.is_set():
                    return
                if n % 3 == 0:
                    item_id = f"-k{n}" if n % 2 else f"zz{n}"
                    response = await client.put(f"/api/items/{item_id}", json=LAMP)
                else:
                    response = await client.post("/api/items", json={**LAMP, "name": f"late{n}"})
                assert response.status == 201
                created.append((await response.json())["id"])
                made.set()
        finally:
            stop.set()
            made.set()

    async def let_one_be_created() -> None:
        # Pages and creates run concurrently anyway; this makes sure at least
        # one create lands between any two pages, however the tasks interleave.
        if not stop.is_set():
            made.clear()
            await made.wait()

    creator = asyncio.create_task(keep_creating())
    try:
        await made.wait()
        created_when_paging_began = len(created)
        seen_pages = await pages(client, between=let_one_be_created)
        created_while_paging = len(created) - created_when_paging_began
        stop.set()
    finally:
        await creator

    seen = [item["id"] for page in seen_pages for item in page]
    assert created_while_paging >= len(seen_pages) - 1 > 5
    assert all(a.encode() < b.encode() for a, b in itertools.pairwise(seen)), (
        "ids went backwards or repeated across pages"
    )
    assert before <= set(seen), f"missed {sorted(before - set(seen))}"
    assert set(seen) <= before | set(created)
    # Once the writes stop, a fresh walk sees everything, each once.
    final = [item["id"] for page in await pages(client) for item in page]
    assert final == sorted(before | set(created), key=str.encode)
