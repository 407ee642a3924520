"""Migration 0008 and the rule it changes: a group's variants are active together, a group and
a single run of one issue never are; going back to 0007 ends the active variants."""

from __future__ import annotations

import dataclasses

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.runs.groups import GroupCreated, GroupExists, create_group
from bot.runs.ledger import AlreadyActive, Created, create_run, request_cancel
from bot.store import migrate
from bot.store.tables import runs
from tests.store.test_migration_approvals import request

SPREAD = [("claude", "opus"), ("codex", None)]


async def test_a_group_and_a_single_run_exclude_each_other(engine: AsyncEngine) -> None:
    new = request(1)
    group = await create_group(engine, new, SPREAD)
    assert isinstance(group, GroupCreated) and len(group.run_ids) == 2
    # The same delivery again (a redelivered webhook) makes nothing more.
    again = await create_group(engine, new, SPREAD)
    assert isinstance(again, GroupExists) and again.group.id == group.group_id
    assert isinstance(await create_run(engine, request(1)), AlreadyActive)
    assert isinstance(await create_group(engine, request(1), SPREAD), AlreadyActive)
    async with engine.connect() as conn:
        rows = (await conn.execute(select(runs).order_by(runs.c.id))).all()
    assert [(r.variant, r.agent, r.model, r.group_id) for r in rows] == [
        (1, "claude", "opus", group.group_id), (2, "codex", None, group.group_id)]
    assert len({r.delivery_id for r in rows}) == 2

    for run_id in group.run_ids:  # queued: cancelled at once
        await request_cancel(engine, run_id, by="octocat")
    single = await create_run(engine, request(1))
    assert isinstance(single, Created)
    assert isinstance(await create_group(engine, request(1), SPREAD), AlreadyActive)


async def test_a_downgrade_ends_active_variants_and_keeps_single_runs(
        engine: AsyncEngine) -> None:
    group = await create_group(engine, request(1), SPREAD)
    assert isinstance(group, GroupCreated)
    single = await create_run(engine, dataclasses.replace(request(2)))
    assert isinstance(single, Created)

    await migrate.downgrade(engine, "0007")
    async with engine.connect() as conn:
        states = dict((await conn.execute(select(runs.c.id, runs.c.state))).all())
    assert states == {group.run_ids[0]: "cancelled", group.run_ids[1]: "cancelled",
                      single.run_id: "queued"}
    await migrate.upgrade(engine)
    assert await migrate.current(engine) == migrate.head()
    assert isinstance(await create_run(engine, request(2)), AlreadyActive)


async def test_a_long_delivery_id_still_names_each_variant(engine: AsyncEngine) -> None:
    new = dataclasses.replace(request(3), delivery_id="d" * 64)
    group = await create_group(engine, new, SPREAD)
    assert isinstance(group, GroupCreated)
    async with engine.connect() as conn:
        ids = (await conn.execute(select(runs.c.delivery_id).order_by(runs.c.id))
               ).scalars().all()
    assert len(set(ids)) == 2 and all(len(i) <= 64 and i.endswith((":v1", ":v2")) for i in ids)
