"""`run.py migrate` and `run.py reshard`: the shards without the HTTP server."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TextIO

from prometheus_client import CollectorRegistry

from app.config import Config
from app.sharding.backend import ShardUnavailable
from app.sharding.factory import build_shards
from app.sharding.migrations import MigrationError, migrate, schema_version
from app.sharding.reshard import reshard
from app.sharding.settings import ShardingSettings
from app.sharding.shards import ShardSet

EXIT_OK, EXIT_FAILED = 0, 1


@asynccontextmanager
async def connected(config: Config) -> AsyncIterator[ShardSet]:
    settings = config.settings(ShardingSettings)
    shards = build_shards(settings, config.server.data_path, CollectorRegistry())
    try:
        await asyncio.gather(*(s.backend.open() for s in shards))
        yield shards
    finally:
        await asyncio.gather(*(s.backend.close() for s in shards))


async def migrate_command(config: Config, out: TextIO | None = None) -> int:
    """Apply pending migrations to every shard and report what ran on each."""
    out = out or sys.stdout
    failed = False
    try:
        async with connected(config) as shards:
            for shard in shards:
                try:
                    report = await migrate(shard.name, shard.backend)
                except MigrationError as exc:
                    print(f"{shard.name} ({shard.dsn}): refused: {exc}", file=out)
                    failed = True
                    continue
                ran = ", ".join(report.applied) or "nothing pending"
                print(f"{shard.name} ({shard.dsn}): {ran}; at version {report.version}", file=out)
    except ShardUnavailable as exc:
        print(f"error: {exc}", file=out)
        return EXIT_FAILED
    return EXIT_FAILED if failed else EXIT_OK


class _ProgressBar:
    """A one-line bar on a terminal; a line every 10% elsewhere (logs stay readable)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self.last_decile = -1

    def __call__(self, done: int, total: int) -> None:
        fraction = done / total if total else 1.0
        if self.tty:
            filled = int(fraction * 30)
            self.out.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {done}/{total} rows")
            self.out.flush()
        elif int(fraction * 10) > self.last_decile:
            self.last_decile = int(fraction * 10)
            print(f"scanned {done}/{total} rows", file=self.out)

    def close(self) -> None:
        if self.tty:
            self.out.write("\n")


async def reshard_command(config: Config, *, dry_run: bool, out: TextIO | None = None) -> int:
    """Move rows to the shards that own them now; report per-shard counts."""
    out = out or sys.stdout
    try:
        async with connected(config) as shards:
            for shard in shards:
                if await schema_version(shard.backend) == 0:
                    await migrate(shard.name, shard.backend)  # a new, empty shard
            bar = _ProgressBar(out)
            try:
                report = await reshard(shards, dry_run=dry_run, progress=bar)
            finally:
                bar.close()
    except (ShardUnavailable, MigrationError) as exc:
        print(f"error: {exc}; nothing was lost, run it again once fixed", file=out)
        return EXIT_FAILED
    verb = "would move" if dry_run else "moved"
    for name, counts in report.shards.items():
        line = (
            f"{name}: scanned {counts.scanned}, {verb} out {counts.moved_out}, in {counts.moved_in}"
        )
        if counts.skipped_changed:
            line += f", {counts.skipped_changed} changed meanwhile (run again)"
        print(line, file=out)
    print(f"{'dry run: ' if dry_run else ''}{verb} {report.moved} row(s)", file=out)
    return EXIT_OK
