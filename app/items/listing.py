"""One page of a list merged across every shard, reading about each shard's share.

Ids hash evenly onto the shards, so of the `limit` smallest ids after the
cursor each of n shards holds about limit/n. Each shard is asked at once for
a little more than its share (`first_ask`); the pages are merged by id, and a
shard whose rows ran out while it may hold more is asked again — for no more
than the page still needs — before anything after its last row is taken. The
page is exactly what asking every shard for `limit + 1` rows would give, at
under half the rows read on three shards, in one round nearly always (a
second happens when the ids a page spans are unevenly spread: a few pages in
a hundred on three shards). Order is by
id, bytewise, on every dialect.
"""

from __future__ import annotations

import asyncio
import heapq
import math
from collections.abc import Awaitable, Callable

from app.sharding.backend import Row

# Rows of shard `index` with id > `after` (None: from the start), in id order, at most `count`.
Fetch = Callable[[int, str | None, int], Awaitable[list[Row]]]

SPARE = 1.25  # ask each shard for this many times its share, plus a few rows
EXTRA = 2


def first_ask(wanted: int, shards: int) -> int:
    """Rows to ask each shard for first, to get `wanted` rows across `shards` in one round."""
    return min(wanted, math.ceil(wanted / shards * SPARE) + EXTRA)


async def merged_page(fetch: Fetch, shards: int, wanted: int, after: str | None) -> list[Row]:
    """The first `wanted` rows after `after` across every shard, in id order.

    Ids compare as strings: code-point order is the order of their UTF-8 bytes,
    bytewise, as the shards sort them."""
    ask = first_ask(wanted, shards)
    pages = list(await asyncio.gather(*(fetch(i, after, ask) for i in range(shards))))
    more = [len(page) == ask for page in pages]  # a full page: the shard may hold more
    heads = [0] * shards
    # (id of the shard's next row, shard): the smallest on top.
    heap = [(page[0]["id"], i) for i, page in enumerate(pages) if page]
    heapq.heapify(heap)
    rows: list[Row] = []
    while heap and len(rows) < wanted:
        _, shard = heapq.heappop(heap)
        page = pages[shard]
        rows.append(page[heads[shard]])
        heads[shard] += 1
        if heads[shard] == len(page) and more[shard]:
            # Run out, and it may hold more: ask it again before anything after its
            # last row can be taken (for no more than the page still needs).
            need = wanted - len(rows)
            if need == 0:
                break
            page = pages[shard] = await fetch(shard, str(page[-1]["id"]), need)
            heads[shard], more[shard] = 0, len(page) == need
        if heads[shard] < len(page):
            heapq.heappush(heap, (page[heads[shard]]["id"], shard))
    return rows
