"""Migration 0007: one active run per issue counts runs awaiting approval; going back ends
them; either way the runs' history stays."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.runs.ledger import AlreadyActive, Created, NewRun, create_run
from bot.store import migrate
from bot.store.tables import RunState, run_transitions, runs


def request(number: int) -> NewRun:
    return NewRun(
        installation_id=7, repo_id=100, repo_full_name="octo-org/demo",
        clone_url="https://github.com/octo-org/demo.git", number=number,
        is_pull_request=False, base_ref="main", trigger="comment", sender_login="stranger",
        sender_id=2, delivery_id=str(uuid.uuid4()), agent="claude", timeout_seconds=600)


async def test_a_waiting_run_is_active_and_a_downgrade_ends_it(engine: AsyncEngine) -> None:
    waiting = await create_run(engine, request(1), RunState.AWAITING_APPROVAL)
    assert isinstance(waiting, Created)
    assert isinstance(await create_run(engine, request(1)), AlreadyActive)
    # The database itself refuses a second active run beside one awaiting approval.
    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await conn.execute(runs.insert().values(
                **request(1).__dict__, state=RunState.QUEUED.value,
                created_at=dt.datetime.now(dt.UTC), updated_at=dt.datetime.now(dt.UTC)))
    denied = await create_run(engine, request(2), RunState.AWAITING_APPROVAL)
    assert isinstance(denied, Created)
    async with engine.begin() as conn:
        await conn.execute(runs.update().where(runs.c.id == denied.run_id)
                           .values(state=RunState.DENIED.value))

    await migrate.downgrade(engine, "0006")
    async with engine.connect() as conn:
        states = dict((await conn.execute(select(runs.c.id, runs.c.state))).all())
        marks = (await conn.execute(select(run_transitions.c.to_state))).scalars().all()
    assert states == {waiting.run_id: "cancelled", denied.run_id: "cancelled"}
    assert set(marks) == {"cancelled"}

    await migrate.upgrade(engine)
    assert await migrate.current(engine) == migrate.head()
    async with engine.connect() as conn:  # nothing of the runs' history lost on the way
        assert (await conn.execute(select(run_transitions.c.to_state))).scalars().all() == marks
    again = await create_run(engine, request(3), RunState.AWAITING_APPROVAL)
    assert isinstance(again, Created)
    assert isinstance(await create_run(engine, request(3)), AlreadyActive)
