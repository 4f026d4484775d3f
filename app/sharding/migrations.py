"""Per-shard schema migrations: `migrations/NNNN_name.sql`, applied in order.

A migration is `NNNN_name.sql`, or per dialect `NNNN_name.sqlite.sql` and
`NNNN_name.postgresql.sql` where SQLite and PostgreSQL differ. Each shard
records what it applied in `keel_migrations` with a checksum of the file it
ran; each pending migration runs in its own transaction with its record.
Refused, with `MigrationError`: a migration edited after it was applied (the
checksum differs) and a shard ahead of the code (it applied a version this
code does not have).
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from pathlib import Path

from app.errors import KeelError
from app.sharding.backend import ShardBackend

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent.parent / "migrations"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+?)(?:\.(sqlite|postgresql))?\.sql$")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS keel_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    checksum TEXT NOT NULL,
    applied_at TEXT NOT NULL
)
"""


class MigrationError(KeelError):
    """A shard's schema does not match the code's migrations."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(dialect: str, directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migrations for `dialect` in version order; a dialect variant wins over plain."""
    chosen: dict[int, tuple[bool, Path, str]] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: expected NNNN_name.sql or NNNN_name.<dialect>.sql")
        version, name, variant = int(match[1]), match[2], match[3]
        if variant not in (None, dialect):
            continue
        specific = variant is not None
        if version in chosen and chosen[version][0] == specific:
            raise MigrationError(f"two migrations numbered {version:04d} for {dialect}")
        if version not in chosen or specific:
            chosen[version] = (specific, path, name)
    return [
        Migration(version, name, path.read_text())
        for version, (_, path, name) in sorted(chosen.items())
    ]


@dataclass(frozen=True)
class MigrationReport:
    shard: str
    version: int  # the schema version after the run
    applied: tuple[str, ...]  # "0001_items" for each migration that ran now


async def applied_versions(backend: ShardBackend) -> dict[int, str]:
    """version -> checksum of what the shard applied."""
    async with backend.transaction() as tx:
        await backend.lock_schema(tx)
        await tx.execute(_CREATE_TABLE)
    rows = await backend.fetch("SELECT version, checksum FROM keel_migrations ORDER BY version")
    return {int(row["version"]): str(row["checksum"]) for row in rows}


def check(shard: str, migrations: list[Migration], applied: dict[int, str]) -> list[Migration]:
    """The pending migrations; raise MigrationError for an edited or unknown applied one."""
    known = {m.version: m for m in migrations}
    ahead = sorted(set(applied) - set(known))
    if ahead:
        raise MigrationError(
            f"{shard} is ahead of the code: it applied migration(s) "
            f"{', '.join(f'{v:04d}' for v in ahead)} that this version does not have; "
            "deploy the newer code"
        )
    for version, checksum in applied.items():
        if known[version].checksum != checksum:
            migration = known[version]
            raise MigrationError(
                f"{shard}: migration {version:04d}_{migration.name} was edited after it was "
                "applied (checksum differs); add a new migration instead of editing one"
            )
    return [m for m in migrations if m.version not in applied]


async def migrate(
    shard: str, backend: ShardBackend, migrations: list[Migration] | None = None
) -> MigrationReport:
    """Apply the shard's pending migrations, each in one transaction with its record."""
    migrations = discover(backend.dialect) if migrations is None else migrations
    pending = check(shard, migrations, await applied_versions(backend))
    ran = []
    for migration in pending:
        async with backend.transaction() as tx:
            await backend.lock_schema(tx)
            if await tx.fetchrow(
                "SELECT version FROM keel_migrations WHERE version = $1", migration.version
            ):
                continue  # another instance applied it while this one waited for the lock
            await backend.run_script(tx, migration.sql)
            await tx.execute(
                "INSERT INTO keel_migrations (version, name, checksum, applied_at)"
                " VALUES ($1, $2, $3, $4)",
                migration.version,
                migration.name,
                migration.checksum,
                time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            )
        ran.append(migration)
    version = migrations[-1].version if migrations else 0
    return MigrationReport(shard, version, tuple(f"{m.version:04d}_{m.name}" for m in ran))


async def schema_version(backend: ShardBackend) -> int:
    applied = await applied_versions(backend)
    return max(applied, default=0)
