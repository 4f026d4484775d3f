"""Shard DSNs: `sqlite:///rel.db` (under server.data_dir), `sqlite:////abs.db`, `postgresql://…`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Dialect = Literal["sqlite", "postgresql"]

_SQLITE = "sqlite:///"
_POSTGRES = ("postgresql://", "postgres://")


@dataclass(frozen=True)
class ShardDsn:
    """A parsed DSN: the dialect and what the backend connects to."""

    dialect: Dialect
    target: str  # a file path for SQLite, the DSN itself for PostgreSQL

    @classmethod
    def parse(cls, dsn: str, data_dir: Path) -> ShardDsn:
        if dsn.startswith(_SQLITE):
            path = dsn[len(_SQLITE) :]
            if not path or path == "/":
                raise ValueError(f'"{dsn}" names no file: use sqlite:///shard0.db')
            file = Path(path) if path.startswith("/") else data_dir / path
            return cls("sqlite", str(file))
        if dsn.startswith(_POSTGRES):
            return cls("postgresql", dsn)
        raise ValueError(
            'expected "sqlite:///file.db", "sqlite:////abs/file.db" or "postgresql://…"'
        )


def check_dsn(dsn: str) -> str | None:
    """Config validator: a problem text, or None."""
    try:
        ShardDsn.parse(dsn, Path("."))
    except ValueError as exc:
        return str(exc)
    return None
