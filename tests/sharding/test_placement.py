"""Placement is pure: where a key lives, how evenly, and what moves when a shard is added."""

from __future__ import annotations

import hashlib
import itertools
import os
import random
import subprocess
import sys
from collections import Counter

import pytest

from app.items.model import new_id
from app.sharding.placement import DEFAULT_LOGICAL_SHARDS, Placement, logical_shard
from tests.support.services import REPO

KEYS = 10_000


def simple_keys() -> list[str]:
    return [f"key-{i}" for i in range(KEYS)]


def server_ids() -> list[str]:
    """Ids the way the server makes them (fixed seed: the test must not be flaky)."""
    rng = random.Random(20240501)
    start_ms = 1_714_521_600_000
    return [new_id(now_ms=start_ms + i * 7, entropy=rng.randbytes(10)) for i in range(KEYS)]


KEY_SETS = {"simple": simple_keys, "server_ids": server_ids}


def table_digest(placement: Placement) -> str:
    return hashlib.sha256(",".join(map(str, placement.table)).encode()).hexdigest()


@pytest.mark.parametrize("kind", sorted(KEY_SETS))
def test_three_shards_each_get_a_third_within_ten_percent(kind: str) -> None:
    placement = Placement(3)
    counts = Counter(placement.shard_of(key) for key in KEY_SETS[kind]())
    assert sorted(counts) == [0, 1, 2]
    third = KEYS / 3
    for shard, n in counts.items():
        assert abs(n - third) <= 0.10 * third, f"shard {shard} holds {n} of {KEYS} keys"


@pytest.mark.parametrize("kind", sorted(KEY_SETS))
def test_adding_a_fourth_shard_moves_few_keys_and_only_onto_it(kind: str) -> None:
    before, after = Placement(3), Placement(4)
    moved = [
        (old, new)
        for key in KEY_SETS[kind]()
        if (old := before.shard_of(key)) != (new := after.shard_of(key))
    ]
    assert len(moved) <= 0.30 * KEYS
    assert len(moved) > 0.15 * KEYS  # the new shard does get its share
    assert {new for _, new in moved} == {3}, "a key moved between two of the old shards"


def test_every_logical_shard_moves_only_to_a_newly_added_shard() -> None:
    tables = [Placement(n).table for n in range(1, 7)]
    for smaller, larger in itertools.pairwise(tables):
        new_position = max(larger)
        for old, new in zip(smaller, larger, strict=True):
            assert new in (old, new_position)


def test_one_shard_holds_everything() -> None:
    placement = Placement(1)
    assert set(placement.table) == {0}
    assert {placement.shard_of(key) for key in simple_keys()[:1000]} == {0}
    assert placement.logical_counts() == [DEFAULT_LOGICAL_SHARDS]


def test_no_shards_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Placement(0)


def test_logical_counts_cover_every_logical_shard() -> None:
    placement = Placement(3, logical_shards=64)
    counts = placement.logical_counts()
    assert len(counts) == 3
    assert sum(counts) == 64
    assert len(placement.table) == 64
    assert all(0 <= logical_shard(key, 64) < 64 for key in simple_keys()[:500])


def test_the_map_is_identical_in_other_processes() -> None:
    """BLAKE2b, not `hash()`: another process with another hash seed computes the same map."""
    code = (
        "import hashlib\n"
        "from app.sharding.placement import Placement\n"
        "table = Placement(3).table\n"
        "print(hashlib.sha256(','.join(map(str, table)).encode()).hexdigest())\n"
        "print(hash('key-0'))\n"
    )
    outputs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO)}
        done = subprocess.run(
            [sys.executable, "-c", code],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        outputs.append(done.stdout.split())
    (digest_a, hash_a), (digest_b, hash_b) = outputs
    assert hash_a != hash_b  # the seeds really differed
    assert digest_a == digest_b == table_digest(Placement(3))


def test_logical_shard_and_the_map_are_pinned() -> None:
    """Changing the hash moves every stored row: these values must never change."""
    assert logical_shard("key-0") == 311
    assert logical_shard("key-1") == 991
    assert logical_shard("01J9ZQ0000000000000000000A") == 32
    assert table_digest(Placement(3)) == (
        "e6aa95de6549bc8150faffc8e05267c5ed6992dc2d6b2254aebd4727313f1eb7"
    )
