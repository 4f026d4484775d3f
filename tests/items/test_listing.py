"""The merged page (`app.items.listing`): exactly what asking every shard for `limit + 1`
rows gives, however the ids spread, reading fewer rows. Pure: shards are sorted lists."""

from __future__ import annotations

import random

import pytest

from app.items.listing import first_ask, merged_page


class Shards:
    def __init__(self, ids_per_shard: list[list[str]]) -> None:
        self.data = [sorted(ids, key=str.encode) for ids in ids_per_shard]
        self.rows_read = 0
        self.asks = 0

    async def fetch(self, index: int, after: str | None, count: int) -> list[dict[str, str]]:
        self.asks += 1
        rows = [i for i in self.data[index] if after is None or i.encode() > after.encode()]
        self.rows_read += min(count, len(rows))
        return [{"id": i} for i in rows[:count]]

    def naive(self, wanted: int, after: str | None) -> list[str]:
        every = sorted((i for ids in self.data for i in ids), key=str.encode)
        return [i for i in every if after is None or i.encode() > after.encode()][:wanted]


def spread(count: int, shards: int, rng: random.Random, weights: list[float]) -> list[list[str]]:
    ids: list[list[str]] = [[] for _ in range(shards)]
    for n in range(count):
        ids[rng.choices(range(shards), weights)[0]].append(f"{n:06d}-{rng.random():.6f}")
    return ids


@pytest.mark.parametrize(
    "weights",
    [[1, 1, 1], [1, 0, 0], [8, 1, 1], [0, 1, 0], [1, 1, 0]],
    ids=["even", "one-shard", "skewed", "middle-only", "two"],
)
async def test_every_page_is_the_naive_merge(weights: list[float]) -> None:
    rng = random.Random(19)
    shards = Shards(spread(400, 3, rng, weights))
    for wanted in (1, 2, 17, 51, 201):
        after = None
        while True:
            page = [row["id"] for row in await merged_page(shards.fetch, 3, wanted, after)]
            assert page == shards.naive(wanted, after)
            if len(page) < wanted:
                break
            after = page[-2] if wanted > 1 else page[-1]  # overlap a little, as cursors do not


async def test_an_even_spread_reads_about_half_the_rows_in_one_round() -> None:
    shards = Shards(spread(3000, 3, random.Random(7), [1, 1, 1]))
    pages = 0
    after = None
    for _ in range(20):
        page = await merged_page(shards.fetch, 3, 51, after)
        after = page[-1]["id"]
        pages += 1
    naive_rows = pages * 3 * 51
    assert shards.rows_read < naive_rows * 0.65
    assert shards.asks <= pages * 3 + 3  # a second round is rare


async def test_empty_shards_and_a_cursor_past_the_end() -> None:
    shards = Shards([[], ["a", "b"], []])
    assert [r["id"] for r in await merged_page(shards.fetch, 3, 5, None)] == ["a", "b"]
    assert await merged_page(shards.fetch, 3, 5, "b") == []


def test_the_first_ask_is_a_share_with_room_never_more_than_wanted() -> None:
    assert first_ask(51, 3) == 24
    assert first_ask(51, 1) == 51
    assert first_ask(2, 3) == 2
