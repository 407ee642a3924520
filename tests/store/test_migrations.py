"""The migrations build exactly the schema of bot/store/tables.py, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.store import migrate
from bot.store.tables import metadata


async def test_migrated_database_matches_the_tables(engine: AsyncEngine) -> None:
    def diff(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, metadata))

    async with engine.connect() as conn:
        assert await conn.run_sync(diff) == []


async def test_downgrade_to_the_first_revision_and_back(engine: AsyncEngine) -> None:
    await migrate.downgrade(engine, "0001")
    assert await migrate.current(engine) == "0001"
    await migrate.upgrade(engine)
    assert await migrate.current(engine) == migrate.head()
