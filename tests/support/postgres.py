"""Throwaway PostgreSQL databases, made and dropped on the server's maintenance database."""

from __future__ import annotations


async def run_as_admin(admin_url: str, statements: list[str]) -> None:
    """Run statements (CREATE/DROP DATABASE) on the server's maintenance database."""
    import asyncpg

    admin = await asyncpg.connect(admin_url)
    try:
        for statement in statements:
            await admin.execute(statement)
    finally:
        await admin.close()


def create_database(name: str) -> str:
    return f'CREATE DATABASE "{name}"'


def drop_database(name: str) -> str:
    return f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
