"""Resharding after a shard is appended: every row ends on its owner, exactly once,
also when a run is interrupted — in-process or by SIGKILL — and run again."""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from app.config import Config
from app.items.model import new_id
from app.sharding.commands import connected, migrate_command, reshard_command
from app.sharding.migrations import migrate
from app.sharding.reshard import reshard
from tests.support.apps import ConfigFactory
from tests.support.services import REPO


class Interrupted(Exception):
    pass


async def shard_dsns(kind: str, pg_databases, count: int) -> list[str]:
    if kind == "sqlite":
        return [f"sqlite:///reshard{i}.db" for i in range(count)]
    return [await pg_databases() for _ in range(count)]


def config_for(make_config: ConfigFactory, dsns: list[str]) -> Config:
    return make_config(SHARDING__SHARDS=json.dumps(dsns))


async def seed(config: Config, count: int) -> set[str]:
    ids = set()
    async with connected(config) as shards:
        for shard in shards:
            await migrate(shard.name, shard.backend)
        for n in range(count):
            ids.add(new_id() if n % 2 else f"client-{n}")
        for shard in shards:  # one transaction per shard keeps seeding fast
            async with shard.transaction() as tx:
                for item_id in (i for i in ids if shards.for_key(i) is shard):
                    await tx.execute(
                        "INSERT INTO items (id, name, price, tags, version, created_at,"
                        " updated_at) VALUES ($1, $2, 1.0, '[]', 1, 'x', 'x')",
                        item_id,
                        f"item {item_id}",
                    )
    return ids


async def placement_of(config: Config) -> dict[str, list[str]]:
    """shard name -> ids stored there."""
    found: dict[str, list[str]] = {}
    async with connected(config) as shards:
        for shard in shards:
            rows = await shard.fetch("SELECT id FROM items ORDER BY id")
            found[shard.name] = [row["id"] for row in rows]
    return found


async def assert_every_row_on_its_owner_once(config: Config, ids: set[str]) -> None:
    found = await placement_of(config)
    everywhere = [i for rows in found.values() for i in rows]
    assert sorted(everywhere) == sorted(ids)  # each id exactly once, none lost
    async with connected(config) as shards:
        for name, rows in found.items():
            assert all(shards.for_key(i).name == name for i in rows)


@pytest.fixture(params=["sqlite", "postgresql"])
def kind(request) -> str:
    return request.param


async def test_reshard_moves_only_what_changed_owner(kind, make_config, pg_databases) -> None:
    dsns = await shard_dsns(kind, pg_databases, 4)
    three, four = config_for(make_config, dsns[:3]), config_for(make_config, dsns)
    ids = await seed(three, 300)
    async with connected(four) as shards:
        for shard in shards:
            await migrate(shard.name, shard.backend)
        dry = await reshard(shards, dry_run=True)
        assert 0 < dry.moved <= 0.3 * len(ids) + 15
        assert (await placement_of(four))["shard.3"] == []  # a dry run changes nothing
        report = await reshard(shards)
    assert report.moved == dry.moved
    assert report.shards["shard.3"].moved_in == report.moved  # only the new shard gains
    await assert_every_row_on_its_owner_once(four, ids)


async def test_an_interrupted_run_loses_nothing_and_a_second_run_finishes(
    kind, make_config, pg_databases
) -> None:
    dsns = await shard_dsns(kind, pg_databases, 4)
    three, four = config_for(make_config, dsns[:3]), config_for(make_config, dsns)
    ids = await seed(three, 240)

    def stop_after_first_batch(done: int, total: int) -> None:
        raise Interrupted

    async with connected(four) as shards:
        for shard in shards:
            await migrate(shard.name, shard.backend)
        with pytest.raises(Interrupted):
            await reshard(shards, batch=40, progress=stop_after_first_batch)
    stored = {i for rows in (await placement_of(four)).values() for i in rows}
    assert stored == ids  # nothing lost mid-way
    async with connected(four) as shards:
        await reshard(shards, batch=40)
    await assert_every_row_on_its_owner_once(four, ids)


async def test_sigkill_during_reshard_then_rerun(
    make_config: ConfigFactory, tmp_path: Path
) -> None:
    dsns = [f"sqlite:///killed{i}.db" for i in range(4)]
    three, four = config_for(make_config, dsns[:3]), config_for(make_config, dsns)
    ids = await seed(three, 3000)
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    env["KEEL_SERVER__DATA_DIR"] = str(four.server.data_path)
    env["KEEL_SHARDING__SHARDS"] = json.dumps(dsns)
    process = await asyncio.create_subprocess_exec(
        sys.executable, "run.py", "reshard", cwd=REPO, env=env, stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    first = await asyncio.wait_for(process.stdout.readline(), 30)
    assert b"scanned" in first
    process.send_signal(signal.SIGKILL)  # mid-run: after its first progress line
    await process.wait()
    stored = {i for rows in (await placement_of(four)).values() for i in rows}
    assert stored == ids
    assert await reshard_command(four, dry_run=False, out=io.StringIO()) == 0
    await assert_every_row_on_its_owner_once(four, ids)


async def test_migrate_command_reports_each_shard(make_config: ConfigFactory, capsys) -> None:
    config = config_for(make_config, ["sqlite:///m0.db", "sqlite:///m1.db"])
    assert await migrate_command(config) == 0
    first = capsys.readouterr().out.splitlines()
    assert first == [
        "shard.0 (sqlite:///m0.db): 0001_items, 0002_jobs, 0003_audit; at version 3",
        "shard.1 (sqlite:///m1.db): 0001_items, 0002_jobs, 0003_audit; at version 3",
    ]
    assert await migrate_command(config) == 0
    assert "nothing pending; at version 3" in capsys.readouterr().out
