"""The benchmark's databases: a fresh SQLite file or PostgreSQL database, and row counts."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

DEFAULT_POSTGRES = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


@dataclass(frozen=True)
class Database:
    """Where agentbot stores deliveries in one benchmark row, and how to count them."""

    label: str
    url: str  # the AGENTBOT_DATABASE_URL handed to agentbot

    def count_deliveries(self, prefixes: list[str]) -> int:
        """Stored deliveries whose id starts with one of the run's prefixes."""
        if self.url.startswith("sqlite"):
            return _count_sqlite(Path(self.url.split("///", 1)[1]), prefixes)
        return asyncio.run(_count_postgres(_asyncpg_dsn(self.url), prefixes))


def _asyncpg_dsn(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme="postgresql"))


def _count_sqlite(path: Path, prefixes: list[str]) -> int:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return sum(conn.execute("SELECT count(*) FROM deliveries WHERE delivery_id LIKE ?",
                                (prefix + "-%",)).fetchone()[0] for prefix in prefixes)


async def _count_postgres(dsn: str, prefixes: list[str]) -> int:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        total = 0
        for prefix in prefixes:
            total += await conn.fetchval(
                "SELECT count(*) FROM deliveries WHERE delivery_id LIKE $1", prefix + "-%")
        return int(total)
    finally:
        await conn.close()


def sqlite(workdir: Path) -> Database:
    """A new SQLite file in the run's temporary directory (agentbot's default store)."""
    return Database("SQLite (WAL, synchronous=FULL)",
                    f"sqlite+aiosqlite:///{workdir / 'agentbot.db'}")


@contextlib.contextmanager
def postgres(admin_url: str = DEFAULT_POSTGRES) -> Iterator[Database]:
    """A database created for this run on the server of `admin_url`, dropped afterwards."""
    name = f"agentbot_bench_{secrets.token_hex(4)}"
    admin = _asyncpg_dsn(admin_url)
    asyncio.run(_admin(admin, f'CREATE DATABASE "{name}"'))
    parts = urlsplit(admin_url)
    try:
        yield Database("PostgreSQL", urlunsplit(parts._replace(path=f"/{name}")))
    finally:
        asyncio.run(_admin(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _admin(dsn: str, statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()
