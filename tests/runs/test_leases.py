"""Per-run leases: one holder at a time, released on the way out, expired ones taken over."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.runs import leases
from bot.store.tables import runs, utcnow
from tests.runs.test_callbacks import queue_run


async def test_one_holder_at_a_time_and_expired_leases_are_taken_over(
        engine: AsyncEngine) -> None:
    run_id = await queue_run(engine)
    async with leases.holding(engine, run_id, "publish") as held:
        assert held
        async with leases.holding(engine, run_id, "report") as other:
            assert not other  # the publisher has it
    async with leases.holding(engine, run_id, "report") as again:
        assert again  # released on the way out
    assert await leases.acquire(engine, run_id, "dead-process")
    assert not await leases.acquire(engine, run_id, "alive-process")
    async with engine.begin() as conn:
        await conn.execute(update(runs).where(runs.c.id == run_id).values(
            lease_until=utcnow() - dt.timedelta(seconds=1)))
    assert await leases.acquire(engine, run_id, "alive-process")


async def test_release_all_frees_a_dead_processs_leases(engine: AsyncEngine) -> None:
    first, second = await queue_run(engine, number=1), await queue_run(engine, number=2)
    assert await leases.acquire(engine, first, "dead-process")
    assert await leases.release_all(engine) == 1
    assert await leases.acquire(engine, first, "new-process")
    assert await leases.acquire(engine, second, "new-process")
