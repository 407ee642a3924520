"""SQLite statements make one trip to aiosqlite's thread each (bot/store/sqlite.py), and
behave as through SQLAlchemy's own aiosqlite adapter: rows, RETURNING, rowcount, lastrowid,
executemany, errors, rollback."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import create_async_engine

from bot.store import sqlite
from bot.store.tables import create_engine

meta = MetaData()
items = Table("items", meta, Column("id", Integer, primary_key=True),
              Column("name", String(20), unique=True, nullable=False), Column("n", Integer))


def count_trips(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every function queued to an aiosqlite connection's thread, by any engine."""
    import aiosqlite.core

    trips: list[Any] = []
    original = aiosqlite.core.Connection._execute

    async def counted(self: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
        trips.append(fn)
        return await original(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.core.Connection, "_execute", counted)
    return trips


async def test_the_engine_takes_the_one_trip_dialect_for_aiosqlite_urls(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'a.db'}")
    try:
        assert engine.dialect.driver == sqlite.DRIVER
        assert isinstance(engine.dialect, sqlite.OneTripDialect)
        async with engine.connect() as conn:  # the pragmas still reach every connection
            assert (await conn.execute(text("PRAGMA journal_mode"))).scalar_one() == "wal"
            assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar_one() == 1
    finally:
        await engine.dispose()


async def test_a_statement_is_one_trip_where_the_stock_adapter_takes_several(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trips = count_trips(monkeypatch)

    async def trips_per_select(engine: Any) -> int:
        async with engine.begin() as conn:
            await conn.run_sync(meta.create_all)
            await conn.execute(insert(items), [{"name": "a", "n": 1}])
        async with engine.connect() as conn:
            before = len(trips)
            rows = (await conn.execute(select(items.c.name))).all()
            after = len(trips)
        assert [r.name for r in rows] == ["a"]
        await engine.dispose()
        return after - before

    ours = await trips_per_select(create_engine(f"sqlite+aiosqlite:///{tmp_path / 'o.db'}"))
    stock = await trips_per_select(
        create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 's.db'}"))
    assert ours == 1
    assert stock >= 3  # cursor, execute, fetch, close: what the one trip saves


async def test_results_errors_and_rollback_behave_as_a_dbapi_cursor(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'b.db'}")
    try:
        async with engine.begin() as conn:
            await conn.run_sync(meta.create_all)
            # executemany, then RETURNING and the rowcount of an UPDATE
            await conn.execute(insert(items), [{"name": f"n{i}", "n": i} for i in range(5)])
            new_id = (await conn.execute(
                insert(items).values(name="x", n=9).returning(items.c.id))).scalar_one()
            assert new_id == 6
            changed = await conn.execute(update(items).where(items.c.n < 3).values(n=0))
            assert changed.rowcount == 3
            # lastrowid, as the ORM-less insert without RETURNING reads it
            plain = await conn.execute(text("INSERT INTO items (name, n) VALUES ('y', 1)"))
            assert plain.lastrowid == 7
            # a statement without rows has no description and fetches nothing
            assert (await conn.execute(text("UPDATE items SET n = n WHERE 0"))).rowcount == 0
        async with engine.connect() as conn:
            names = (await conn.execute(select(items.c.name, items.c.n).order_by(items.c.id)
                                        )).all()
            assert [tuple(r) for r in names] == [
                ("n0", 0), ("n1", 0), ("n2", 0), ("n3", 3), ("n4", 4), ("x", 9), ("y", 1)]
            # streamed results read through, too
            streamed = await conn.stream(select(items.c.id).order_by(items.c.id))
            assert [r.id async for r in streamed] == [1, 2, 3, 4, 5, 6, 7]

        # a constraint error is SQLAlchemy's IntegrityError and undoes the transaction
        with pytest.raises(IntegrityError):
            async with engine.begin() as conn:
                await conn.execute(insert(items).values(name="z", n=1))
                await conn.execute(insert(items).values(name="n0", n=1))
        async with engine.connect() as conn:
            assert (await conn.execute(select(items.c.id).where(items.c.name == "z"))
                    ).first() is None
            # a syntax error names itself
            with pytest.raises(Exception, match="syntax error"):
                await conn.execute(text("SELEC 1"))
    finally:
        await engine.dispose()


async def test_only_an_open_transaction_costs_a_commit_or_rollback_trip(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A connection that only read goes back to the pool without a trip to its thread; one
    that wrote is still rolled back (unless committed), a read before the write or not."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'c.db'}")
    try:
        async with engine.begin() as conn:
            await conn.run_sync(meta.create_all)
        trips = count_trips(monkeypatch)
        async with engine.connect() as conn:
            assert (await conn.execute(select(items.c.id))).all() == []
        assert len(trips) == 1  # the SELECT; its rollback at check-in is skipped
        async with engine.connect() as conn:
            await conn.execute(select(items.c.id))
            await conn.rollback()
            await conn.commit()
        assert len(trips) == 2  # the SELECT again, and neither the rollback nor the commit

        # A write left uncommitted is undone when the connection goes back to the pool.
        async with engine.connect() as conn:
            await conn.execute(insert(items).values(name="lost", n=1))
        async with engine.connect() as conn:
            await conn.execute(select(items.c.id))
            await conn.execute(insert(items).values(name="also lost", n=2))
        async with engine.connect() as conn:
            await conn.execute(insert(items).values(name="kept", n=3))
            await conn.commit()
        async with engine.connect() as conn:
            names = (await conn.execute(select(items.c.name))).scalars().all()
        assert names == ["kept"]
    finally:
        await engine.dispose()


async def test_a_write_cancelled_mid_statement_is_rolled_back_not_kept(tmp_path: Path) -> None:
    """A task cancelled while its INSERT still runs in the connection's thread. The skipped
    rollback of an idle connection must not apply here (the transaction opens in the thread,
    after the cancelled caller last looked): SQLAlchemy terminates a connection given back
    by a cancelled task instead of rolling it back, and the INSERT is not kept for the next
    user of the pool to commit."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'd.db'}")
    try:
        async with engine.begin() as conn:
            await conn.run_sync(meta.create_all)
        slow = text("INSERT INTO items (name, n) WITH RECURSIVE c(x) AS "
                    "(SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 600000) "
                    "SELECT 'slow' || x, x FROM c")

        async def write() -> None:
            async with engine.connect() as conn:
                await conn.execute(slow)
                await conn.commit()

        task = asyncio.create_task(write())
        await asyncio.sleep(0.02)  # the INSERT is running in the thread
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        async with engine.connect() as conn:  # whichever pooled connection comes next
            await conn.execute(insert(items).values(name="next", n=0))
            await conn.commit()
        async with engine.connect() as conn:
            names = (await conn.execute(select(items.c.name).order_by(items.c.id))
                     ).scalars().all()
        assert names == ["next"]
    finally:
        await engine.dispose()
