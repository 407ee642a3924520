"""Per-run leases: one holder at a time, released on the way out, expired ones taken over."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.runs import leases
from bot.store.tables import run_groups, runs, utcnow
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


async def test_a_groups_lease_is_the_same_mechanism_and_release_all_frees_it(
        engine: AsyncEngine) -> None:
    """The group comment's lease (run_groups) is taken, refused, expired and freed after a
    crash exactly as a run's is; a run's lease and its group's are separate."""
    import uuid

    from bot.runs.groups import create_group
    from bot.runs.ledger import NewRun

    made = await create_group(engine, NewRun(
        installation_id=7, repo_id=100, repo_full_name="octo-org/demo",
        clone_url="https://github.com/octo-org/demo.git", number=1, is_pull_request=False,
        base_ref="main", trigger="comment", sender_login="octocat", sender_id=1,
        delivery_id=str(uuid.uuid4()), agent="claude", timeout_seconds=600),
        [("claude", "a"), ("claude", "b")])
    group_id = made.group_id
    async with leases.holding(engine, group_id, "report-group", table=run_groups) as held:
        assert held
        async with leases.holding(engine, group_id, "report-group",
                                  table=run_groups) as other:
            assert not other
        # The id may equal a run's id: that run's lease is another row's.
        assert await leases.acquire(engine, group_id, "run-holder")
        await leases.release(engine, group_id, "run-holder")
    assert await leases.acquire(engine, group_id, "dead-process", run_groups)
    assert not await leases.acquire(engine, group_id, "alive-process", run_groups)
    assert await leases.release_all(engine) == 1  # a crashed process's group lease, too
    assert await leases.acquire(engine, group_id, "alive-process", run_groups)
    async with engine.connect() as conn:
        owner = (await conn.execute(select(run_groups.c.lease_owner)
                                    .where(run_groups.c.id == group_id))).scalar()
    assert owner == "alive-process"
