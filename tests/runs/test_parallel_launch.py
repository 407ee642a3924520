"""Launching in parallel: a bounded number of sandboxes start at once, a slow start holds up no
other, the loop does not wait for launches, and claims stay exactly-once across replicas."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import ClientSession
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.config.settings import Settings
from bot.executors.base import RunSpec, SandboxSecrets
from bot.github.client import GitHubApp
from bot.runs import scheduler as sched
from bot.store.tables import RunState, run_transitions, runs
from tests.fakes.github import FakeGitHub
from tests.runs.test_scheduler import REPOS, MemoryExecutor, World, until


class GatedExecutor(MemoryExecutor):
    """Each start waits until the test opens its gate; records how many wait at once."""

    def __init__(self) -> None:
        super().__init__()
        self.gates: dict[int, asyncio.Event] = {}
        self.in_flight = 0
        self.most_in_flight = 0
        self.done: list[int] = []

    def gate(self, run_id: int) -> asyncio.Event:
        return self.gates.setdefault(run_id, asyncio.Event())

    async def start(self, spec: RunSpec, secrets: SandboxSecrets) -> None:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await self.gate(spec.run_id).wait()
            await super().start(spec, secrets)
            self.done.append(spec.run_id)
        finally:
            self.in_flight -= 1


@pytest.fixture
async def world(engine: AsyncEngine, fake_github: FakeGitHub,
                make_settings: Callable[..., Settings]) -> AsyncIterator[World]:
    for installation_id, (owner, name, repo_id) in REPOS.items():
        fake_github.add_installation(installation_id, owner)
        fake_github.add_repo(owner, name, repo_id=repo_id)
    settings = make_settings(github_api_url=fake_github.url, github_app_id=fake_github.app_id,
                             github_private_key=fake_github.private_key_pem,
                             max_concurrent_runs=100, max_runs_per_installation=100,
                             max_parallel_launches=3, internal_port=18081,
                             agent_command="my-agent --prompt {prompt_file}")
    async with ClientSession() as session:
        github = GitHubApp(fake_github.app_id, fake_github.private_key_pem, session,
                           base_url=fake_github.url)
        world = World(engine, fake_github, github, settings)
        world.executor = GatedExecutor()
        world.scheduler = world.make_scheduler()
        yield world
        for gate in world.executor.gates.values():
            gate.set()
        await world.scheduler.close()


async def test_at_most_so_many_start_at_once_and_a_slow_one_holds_up_no_other(
        world: World) -> None:
    executor: GatedExecutor = world.executor  # type: ignore[assignment]
    ids = [await world.queue(7, number) for number in range(1, 9)]
    await world.scheduler.tick()  # returns without waiting for the launches
    await until(lambda: asyncio.sleep(0, executor.in_flight == 3))
    assert sorted(executor.gates) == ids[:3]  # the oldest three, claimed
    states = [await world.state(i) for i in ids]
    assert states == ["starting"] * 3 + ["queued"] * 5
    # The first start hangs; the other two finish, and their slots go to the next runs
    # without another tick of the loop's timer (a finished launch wakes the loop).
    world.scheduler._ticker.start()  # noqa: SLF001 - the loop, as serve runs it
    executor.gate(ids[1]).set()
    executor.gate(ids[2]).set()
    await until(lambda: asyncio.sleep(0, sorted(executor.gates) == ids[:5]))
    for run_id in ids[3:]:
        executor.gate(run_id).set()
    await until(lambda: asyncio.sleep(0, sorted(executor.done) == sorted(ids[1:])))
    assert executor.most_in_flight == 3
    assert ids[0] not in executor.done and await world.state(ids[0]) == "starting"
    executor.gate(ids[0]).set()
    await world.scheduler.idle()
    assert sorted(executor.start_calls) == ids  # each once


async def test_two_replicas_claim_each_run_once_within_the_limits(
        world: World, make_settings: Callable[..., Settings]) -> None:
    if world.engine.dialect.name != "postgresql":
        pytest.skip("several replicas share PostgreSQL; SQLite serves one process")
    executor: GatedExecutor = world.executor  # type: ignore[assignment]
    settings = world.settings.model_copy(update={"max_concurrent_runs": 10,
                                                 "max_parallel_launches": 16})
    other_executor = GatedExecutor()
    replicas = [sched.Scheduler(world.engine, executor, world.github, settings),
                sched.Scheduler(world.engine, other_executor, world.github, settings)]
    ids = [await world.queue(installation, number)
           for number in range(1, 9) for installation in (7, 8, 9)]
    for run_id in ids:
        executor.gate(run_id).set()
        other_executor.gate(run_id).set()
    await asyncio.gather(*(replica.tick() for replica in replicas))
    for replica in replicas:
        await replica.idle()
    started = executor.start_calls + other_executor.start_calls
    assert len(started) == len(set(started)) == 10
    assert started and set(started) <= set(ids)
    async with world.engine.connect() as conn:
        counts: dict[str, int] = dict((await conn.execute(select(runs.c.state, func.count())
                                          .group_by(runs.c.state))).all())
        claims = (await conn.execute(select(func.count()).where(
            run_transitions.c.to_state == RunState.STARTING.value))).scalar_one()
    assert counts == {"starting": 10, "queued": len(ids) - 10} and claims == 10
    # The oldest ten by creation, whichever replica took them.
    assert sorted(started) == sorted(ids)[:10]
    for replica in replicas:
        await replica.close()
