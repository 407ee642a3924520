"""SQLite's write transactions of one process queue in order (SQLiteEngine) instead of meeting
SQLite's busy handler, which sleeps up to 100 ms a step and made a burst of triggers slow."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import text

from bot.store.tables import SQLiteEngine, create_engine


async def test_writers_take_turns_and_a_nested_transaction_goes_through(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'w.db'}")
    assert isinstance(engine, SQLiteEngine)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (n INTEGER)"))
        order: list[str] = []
        inside = asyncio.Event()
        release = asyncio.Event()

        async def first() -> None:
            async with engine.begin() as conn:
                await conn.execute(text("INSERT INTO t VALUES (1)"))
                order.append("first in")
                inside.set()
                await release.wait()
                order.append("first out")

        async def second() -> None:
            await inside.wait()
            async with engine.begin() as conn:
                order.append("second in")
                await conn.execute(text("INSERT INTO t VALUES (2)"))

        tasks = [asyncio.ensure_future(first()), asyncio.ensure_future(second())]
        await inside.wait()
        await asyncio.sleep(0.05)
        assert order == ["first in"]  # the second waits for its turn, not for SQLite
        release.set()
        await asyncio.gather(*tasks)
        assert order == ["first in", "first out", "second in"]

        # 200 writers at once: each commits, none meets "database is locked".
        async def write(n: int) -> None:
            async with engine.begin() as conn:
                await conn.execute(text("INSERT INTO t VALUES (:n)"), {"n": n})

        await asyncio.gather(*(write(n) for n in range(200)))
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar_one() == 202

        # A transaction opened inside the task's own (a read, say) is not made to wait for
        # the one around it, which would never end.
        async def nested() -> int:
            async with engine.begin() as outer:
                await outer.execute(text("INSERT INTO t VALUES (3)"))
                async with engine.begin() as inner:
                    return int((await inner.execute(text("SELECT 1"))).scalar_one())

        assert await asyncio.wait_for(nested(), 10) == 1
    finally:
        await engine.dispose()
