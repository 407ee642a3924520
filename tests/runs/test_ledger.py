"""`transition` and `get_run` (bot/runs/ledger.py), through their statements built once:
a state moves once, with its columns and its record, and a wrong column is refused."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.runs.ledger import get_run, transition
from bot.store.tables import RunState, run_transitions, runs
from tests.runs.test_callbacks import queue_run


async def _records(engine: AsyncEngine, run_id: int) -> list[tuple[str | None, str, str | None]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(
            select(run_transitions.c.from_state, run_transitions.c.to_state,
                   run_transitions.c.reason)
            .where(run_transitions.c.run_id == run_id).order_by(run_transitions.c.id))).all()
    return [tuple(row) for row in rows]


async def test_a_run_moves_once_with_its_columns_and_its_record(engine: AsyncEngine) -> None:
    run_id = await queue_run(engine)
    other = await queue_run(engine, number=2)
    assert await transition(engine, run_id, RunState.STARTING, "scheduled", branch="b-1")
    assert not await transition(engine, run_id, RunState.STARTING, "again")  # already there
    assert not await transition(engine, run_id, RunState.QUEUED, "back")  # not allowed
    run = await get_run(engine, run_id)
    assert run.state == "starting" and run.branch == "b-1" and run.started_at is not None
    assert run.finished_at is None
    assert (await get_run(engine, other)).state == "queued"  # only the one run moved
    assert await transition(engine, run_id, RunState.FAILED, "broke", error="it broke")
    run = await get_run(engine, run_id)
    assert run.state == "failed" and run.error == "it broke" and run.finished_at is not None
    assert (await _records(engine, run_id))[1:] == [
        ("queued", "starting", "scheduled"), ("starting", "failed", "broke")]
    assert await get_run(engine, 10_000) is None


async def test_a_column_expression_is_set_as_before(engine: AsyncEngine) -> None:
    run_id = await queue_run(engine)
    assert await transition(engine, run_id, RunState.STARTING, "scheduled",
                            timeout_seconds=runs.c.timeout_seconds * 2)
    assert (await get_run(engine, run_id)).timeout_seconds == 1200


async def test_a_column_runs_does_not_have_is_refused(engine: AsyncEngine) -> None:
    run_id = await queue_run(engine)
    with pytest.raises(ValueError, match="no column brnach"):
        await transition(engine, run_id, RunState.STARTING, "scheduled", brnach="b-1")
    assert (await get_run(engine, run_id)).state == "queued"
    with pytest.raises(LookupError):
        await transition(engine, 10_000, RunState.STARTING, "scheduled")
