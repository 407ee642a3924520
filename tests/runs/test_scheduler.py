"""The scheduler against the fake GitHub, a real database and an in-memory executor."""

from __future__ import annotations

import asyncio
import base64
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import unused_port
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.app import BOT_KEY, create_app, gateway_app, internal_app
from bot.config.settings import Settings
from bot.executors.base import RunSpec, SandboxPhase, SandboxSecrets, SandboxStatus
from bot.executors.local import LocalExecutor
from bot.gateway import credentials
from bot.gateway.credentials import gateway_key
from bot.gateway.runs import RunGrants
from bot.github.client import GitHubApp
from bot.runs import leases
from bot.runs import scheduler as sched
from bot.runs.callbacks import Result, callback_key, run_token
from bot.runs.ledger import get_run, request_cancel, transition
from bot.store.tables import RunState, run_events, run_transitions, runs
from tests.fakes.github import FakeGitHub
from tests.runs.test_callbacks import queue_run
from tests.sandbox.support import GitHttpServer

REPOS = {7: ("octo-org", "demo", 100), 8: ("acme", "widget", 200), 9: ("initech", "tps", 300)}


async def until(check: Callable[[], Awaitable[bool]], seconds: float = 5.0) -> None:
    """Wait for a background task to make `check` true (polling: nothing to await on)."""
    for _ in range(int(seconds / 0.01)):
        if await check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition never became true")


async def _true(value: bool) -> bool:
    return value


async def _is(state: Awaitable[str], expected: str) -> bool:
    return await state == expected


class MemoryExecutor:
    """The Executor protocol's test double: records calls; the test pushes statuses."""

    name = "memory"

    def __init__(self) -> None:
        self.started: dict[int, tuple[RunSpec, SandboxSecrets]] = {}
        self.start_calls: list[int] = []
        self.cancelled: list[int] = []
        self.alive: set[int] = set()  # sandboxes that exist, as reconcile would find them
        self.start_error: Exception | None = None
        self._queue: asyncio.Queue[SandboxStatus | None] = asyncio.Queue()

    async def start(self, spec: RunSpec, secrets: SandboxSecrets) -> None:
        self.start_calls.append(spec.run_id)
        if self.start_error is not None:
            raise self.start_error
        self.started[spec.run_id] = (spec, secrets)
        self.alive.add(spec.run_id)

    async def cancel(self, run_id: int) -> None:
        self.cancelled.append(run_id)
        self.alive.discard(run_id)

    async def reconcile(self, active_run_ids: set[int]) -> list[SandboxStatus]:
        return [SandboxStatus(i, SandboxPhase.RUNNING if i in self.alive else SandboxPhase.GONE)
                for i in sorted(active_run_ids)]

    def push(self, run_id: int, phase: SandboxPhase, reason: str | None = None) -> None:
        self._queue.put_nowait(SandboxStatus(run_id, phase, reason))

    async def statuses(self) -> AsyncIterator[SandboxStatus]:
        while (status := await self._queue.get()) is not None:
            yield status

    async def close(self) -> None:
        self._queue.put_nowait(None)


class World:
    def __init__(self, engine: AsyncEngine, fake: FakeGitHub, github: GitHubApp,
                 settings: Settings) -> None:
        self.engine, self.fake, self.github, self.settings = engine, fake, github, settings
        self.executor = MemoryExecutor()
        self.scheduler = self.make_scheduler()

    async def tick(self) -> None:
        """One pass of the scheduler, and the launches and publishing it started."""
        await self.scheduler.tick()
        await self.scheduler.idle()

    async def apply(self, status: SandboxStatus) -> None:
        await self.scheduler.apply(status)
        await self.scheduler.idle()

    async def on_result(self, run_id: int, result: Result) -> None:
        await self.scheduler.on_result(run_id, result)
        await self.scheduler.idle()

    def make_scheduler(self) -> sched.Scheduler:
        return sched.Scheduler(self.engine, self.executor, self.github, self.settings,
                               tick_seconds=0.05)

    async def queue(self, installation_id: int = 7, number: int = 1, **fields: Any) -> int:
        owner, name, repo_id = REPOS[installation_id]
        return await queue_run(self.engine, number=number, installation_id=installation_id,
                               repo_id=repo_id, repo_full_name=f"{owner}/{name}",
                               clone_url=f"{self.fake.url}/{owner}/{name}.git", **fields)

    async def state(self, run_id: int) -> str:
        return (await get_run(self.engine, run_id)).state

    async def served(self, run_id: int) -> bool:
        """Whether the gateway still honours the run's credential (read afresh, no cache)."""
        grants = RunGrants(self.engine, gateway_key(self.settings.private_key_pem() or ""),
                           ttl_seconds=0.001)
        return await grants.grant(self.executor.started[run_id][1].gateway_token) is not None


@pytest.fixture
async def world(engine: AsyncEngine, fake_github: FakeGitHub,
                make_settings: Callable[..., Settings]) -> AsyncIterator[World]:
    for installation_id, (owner, name, repo_id) in REPOS.items():
        fake_github.add_installation(installation_id, owner)
        fake_github.add_repo(owner, name, repo_id=repo_id)
    settings = make_settings(github_api_url=fake_github.url, github_app_id=fake_github.app_id,
                             github_private_key=fake_github.private_key_pem,
                             max_concurrent_runs=2, max_runs_per_installation=1,
                             internal_port=18081, agent_command="my-agent --prompt {prompt_file}")
    async with ClientSession() as session:
        github = GitHubApp(fake_github.app_id, fake_github.private_key_pem, session,
                           base_url=fake_github.url)
        world = World(engine, fake_github, github, settings)
        yield world
        await world.scheduler.close()


async def test_limits_start_the_right_runs_oldest_first(world: World) -> None:
    a1 = await world.queue(7, 1)
    a2 = await world.queue(7, 2)
    b1 = await world.queue(8, 1)
    c1 = await world.queue(9, 1)
    await world.tick()
    # Two at most, one per installation: a2 waits for its installation, c1 for a free slot.
    # (The two start side by side: in either order.)
    assert sorted(world.executor.start_calls) == [a1, b1]
    assert [await world.state(r) for r in (a1, a2, b1, c1)] == [
        "starting", "queued", "starting", "queued"]
    await world.tick()  # nothing changed, nothing more starts
    assert sorted(world.executor.start_calls) == [a1, b1]

    await world.apply(SandboxStatus(a1, SandboxPhase.FAILED, "exit code 3"))
    await world.tick()
    assert world.executor.start_calls[2:] == [a2]  # a2 is older than c1 and now allowed
    assert await world.state(c1) == "queued"


async def test_queued_runs_are_read_a_page_at_a_time_and_later_pages_are_reached(
        world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pass reads CLAIM_BATCH queued runs at a time; runs its installation's share keeps
    waiting do not hide a run of another installation on a later page."""
    monkeypatch.setattr(sched, "CLAIM_BATCH", 2)
    waiting = [await world.queue(7, number) for number in range(1, 6)]
    other = await world.queue(8, 1)
    await world.tick()
    assert sorted(world.executor.start_calls) == [waiting[0], other]
    assert [await world.state(r) for r in waiting] == ["starting"] + ["queued"] * 4


async def test_the_launch_builds_the_spec_and_the_two_run_credentials(world: World) -> None:
    run_id = await world.queue(7, 42, title="Fix: the Frobnicator (twice!)",
                               instructions="use a lock", agent="command")
    await world.tick()
    spec, secrets = world.executor.started[run_id]
    main_sha = world.fake.state.repos["octo-org/demo"].git.resolve("main")
    assert (spec.base_ref, spec.base_sha) == ("main", main_sha)
    assert spec.branch == "agentbot/42-fix-the-frobnicator-twice"
    assert spec.callback_url == f"http://127.0.0.1:18081/internal/runs/{run_id}"
    assert spec.agent_command == ["my-agent", "--prompt", "{prompt_file}"]
    assert "Fix: the Frobnicator (twice!)" in spec.prompt and "use a lock" in spec.prompt
    assert spec.limits.timeout_seconds == 600
    key = callback_key(world.settings.private_key_pem() or "")
    assert secrets.callback_token == run_token(key, run_id)
    # The sandbox gets the gateway, not GitHub: its clone goes through the git proxy, and its
    # one other credential is good for this run only.
    gateway = world.settings.sandbox_gateway_url
    assert spec.clone_url == f"{gateway}/git/octo-org/demo.git"
    assert (spec.gateway_url, spec.proxy_url) == (gateway, world.settings.sandbox_proxy_url)
    pem = world.settings.private_key_pem() or ""
    assert secrets.gateway_token == credentials.issue(gateway_key(pem), run_id)
    assert credentials.run_of(gateway_key(pem), secrets.gateway_token) == run_id
    assert await world.served(run_id)
    # No GitHub token for the sandbox: the only one minted is the installation's own (for
    # the branch lookup), never one scoped to the repository.
    assert [t.repository_ids for t in world.fake.state.tokens.values()] == [None]
    run = await get_run(world.engine, run_id)
    assert (run.base_sha, run.branch) == (main_sha, spec.branch)


async def test_a_pull_request_run_works_on_its_head_branch(world: World) -> None:
    run_id = await world.queue(7, 5, is_pull_request=True, base_ref="feature",
                               head_ref="feature", base_sha="a" * 40, instructions="rename it")
    await world.tick()
    spec, _ = world.executor.started[run_id]
    assert (spec.branch, spec.base_ref, spec.base_sha) == ("feature", "feature", "a" * 40)
    assert "pull request #5" in spec.prompt
    assert not world.fake.calls("GET /repos/{owner}/{repo}/branches/{branch}")


async def test_cancel_of_a_running_run(world: World) -> None:
    run_id = await world.queue()
    await world.tick()
    await world.apply(SandboxStatus(run_id, SandboxPhase.RUNNING))
    assert await world.state(run_id) == "running"
    assert await request_cancel(world.engine, run_id, by="octocat") == RunState.RUNNING
    await world.tick()
    assert world.executor.cancelled == [run_id]
    assert await world.state(run_id) == "cancelled"
    assert not await world.served(run_id)
    # The executor's late report of the removed sandbox changes nothing.
    await world.apply(SandboxStatus(run_id, SandboxPhase.GONE, "cancelled"))
    assert await world.state(run_id) == "cancelled"


@pytest.mark.parametrize(("phase", "result", "state", "error"), [
    (SandboxPhase.SUCCEEDED, {"status": "succeeded", "summary": "ok"}, "succeeded", None),
    (SandboxPhase.SUCCEEDED, {"status": "no_changes", "summary": "nothing"}, "succeeded", None),
    (SandboxPhase.SUCCEEDED, {"status": "failed", "summary": "tests fail"}, "failed",
     "tests fail"),
    (SandboxPhase.SUCCEEDED, None, "failed", sched.NO_RESULT),
    (SandboxPhase.FAILED, None, "failed", "exit code 4 (agent failed)"),
    (SandboxPhase.TIMED_OUT, None, "timed_out", "exit code 4 (agent failed)"),
    (SandboxPhase.GONE, None, "failed", sched.VANISHED + ": exit code 4 (agent failed)"),
])
async def test_statuses_end_runs_in_the_right_state(
        world: World, phase: SandboxPhase, result: dict[str, Any] | None, state: str,
        error: str | None) -> None:
    run_id = await world.queue()
    await world.tick()
    await world.apply(SandboxStatus(run_id, SandboxPhase.PENDING))
    assert await world.state(run_id) == "starting"
    await world.apply(SandboxStatus(run_id, SandboxPhase.RUNNING))
    if result is not None:
        async with world.engine.begin() as conn:
            await conn.execute(update(runs).where(runs.c.id == run_id).values(result=result))
    await world.apply(SandboxStatus(run_id, phase, "exit code 4 (agent failed)"))
    run = await get_run(world.engine, run_id)
    assert (run.state, run.error) == (state, error)
    assert run.finished_at is not None
    assert not await world.served(run_id)


async def test_a_failed_result_ends_the_run_at_once(world: World) -> None:
    run_id = await world.queue()
    await world.tick()
    await world.on_result(run_id, Result(status="failed", summary="cannot build"))
    run = await get_run(world.engine, run_id)
    assert (run.state, run.error) == ("failed", "cannot build")
    assert not await world.served(run_id)


async def test_a_start_failure_fails_the_run_without_the_credential(world: World) -> None:
    run_id = await world.queue()
    pem = world.settings.private_key_pem() or ""
    credential = credentials.issue(gateway_key(pem), run_id)

    class Boom(RuntimeError):
        pass

    world.executor.start_error = Boom(f"could not write secret {credential}")
    await world.tick()
    run = await get_run(world.engine, run_id)
    assert run.state == "failed"
    assert run.error.startswith("could not start the sandbox: Boom: could not write secret")
    assert credential not in run.error
    grants = RunGrants(world.engine, gateway_key(pem), ttl_seconds=0.001)
    assert await grants.grant(credential) is None


async def test_a_missing_base_branch_fails_the_run(world: World) -> None:
    run_id = await world.queue(base_ref="no-such-branch")
    await world.tick()
    run = await get_run(world.engine, run_id)
    assert run.state == "failed" and "could not start the sandbox" in run.error
    assert world.executor.start_calls == []
    # Only the installation's own token (for the branch lookup); no sandbox token was minted.
    assert [t.repository_ids for t in world.fake.state.tokens.values()] == [None]


async def test_reconcile_restarts_lost_starts_and_fails_vanished_runs(world: World) -> None:
    lost = await world.queue(7, 1)
    vanished = await world.queue(8, 1)
    adopted = await world.queue(9, 1)
    for run_id in (lost, vanished, adopted):
        assert await transition(world.engine, run_id, RunState.STARTING, "scheduled")
    for run_id in (vanished, adopted):
        assert await transition(world.engine, run_id, RunState.RUNNING, "sandbox running")
    world.executor.alive.add(adopted)
    # A new process: its scheduler reconciles before anything else.
    await world.scheduler.reconcile()
    assert world.executor.start_calls == [lost]
    assert await world.state(lost) == "starting"
    run = await get_run(world.engine, vanished)
    assert (run.state, run.error) == ("failed", sched.VANISHED)
    assert await world.state(adopted) == "running"


async def test_the_loop_launches_on_notify_and_follows_statuses(world: World) -> None:
    scheduler = world.make_scheduler()
    world.scheduler = scheduler
    await scheduler.start()
    assert scheduler.health() is None
    run_id = await world.queue()
    scheduler.notify()
    await until(lambda: _true(run_id in world.executor.started))
    world.executor.push(run_id, SandboxPhase.RUNNING)
    await until(lambda: _is(world.state(run_id), "running"))
    world.executor.push(run_id, SandboxPhase.SUCCEEDED)
    await until(lambda: _is(world.state(run_id), "failed"))
    run = await get_run(world.engine, run_id)
    assert (run.state, run.error) == ("failed", sched.NO_RESULT)
    await scheduler.close()
    assert scheduler.health() == "the scheduler is not running"


AGENT = '''\
import pathlib, sys
prompt = pathlib.Path(sys.argv[1]).read_text()
title = next(line for line in prompt.splitlines() if line.startswith("## Issue"))
pathlib.Path("NOTES.md").write_text(title + "\\n")
pathlib.Path("README.md").unlink()
'''


class GitHubGit(GitHttpServer):
    """The fake GitHub's repositories over smart HTTP, for tokens the fake issued and that are
    still valid with read access to the repository (as github.com checks them)."""

    def __init__(self, fake: FakeGitHub) -> None:
        assert fake.git_root is not None
        super().__init__(fake.git_root, "unused")
        self.fake = fake

    async def handle(self, request: web.Request) -> web.Response:
        header = request.headers.get("Authorization", "")
        scheme, _, encoded = header.partition(" ")
        user, _, token = base64.b64decode(encoded or "").decode().partition(":")
        issued = self.fake.state.tokens.get(token)
        repo = self.fake.state.repos.get(request.path.strip("/").removesuffix(".git")
                                         .split(".git/")[0])
        valid = (scheme == "Basic" and issued is not None and not issued.revoked
                 and repo is not None and issued.repository_ids is not None
                 and repo.id in issued.repository_ids
                 and issued.permissions.get("contents") in ("read", "write"))
        self.expected = header if valid else "\0never"
        return await super().handle(request)


@pytest.mark.slow
async def test_queued_to_succeeded_through_the_local_executor(
        aiohttp_client: Any, aiohttp_server: Any, fake_github: FakeGitHub, database_url: str,
        make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    fake_github.add_installation(7, "octo-org")
    fake_github.add_repo("octo-org", "demo", repo_id=100,
                         files={"README.md": b"# demo\n", "src/app.py": b"print(1)\n"})
    git_server = await aiohttp_server(GitHubGit(fake_github).app())
    agent = tmp_path / "agent.py"
    agent.write_text(AGENT)
    port = unused_port()
    settings = make_settings(database_url=database_url, github_api_url=fake_github.url,
                             github_app_id=fake_github.app_id,
                             github_private_key=fake_github.private_key_pem,
                             internal_port=port,
                             agent_command=f"{sys.executable} {agent} {{prompt_file}}")
    executor = LocalExecutor(state_dir=tmp_path / "state", run_root=tmp_path / "runs",
                             env={"PATH": os.environ["PATH"], "LANG": "C.UTF-8"}, bwrap=False)
    public = create_app(settings, executor=executor)
    await aiohttp_client(public)
    await aiohttp_server(gateway_app(public), port=settings.gateway_port)
    await aiohttp_server(internal_app(public), port=port)
    bot = public[BOT_KEY]
    assert bot.engine is not None and bot.scheduler is not None
    run_id = await queue_run(bot.engine, installation_id=7, repo_id=100, number=3,
                             repo_full_name="octo-org/demo", agent="command",
                             clone_url=str(git_server.make_url("/octo-org/demo.git")))
    bot.scheduler.notify()

    async def finished() -> bool:
        return (await get_run(bot.engine, run_id)).state not in ("queued", "starting",
                                                                  "running")

    await until(finished, seconds=60)
    run = await get_run(bot.engine, run_id)
    assert (run.state, run.error) == ("succeeded", None), run.error
    changes = {c["path"]: c for c in run.result["changes"]}
    assert base64.b64decode(changes["NOTES.md"]["content_b64"]) == \
        b"## Issue #3: Fix the frobnicator\n"
    assert changes["README.md"] == {"path": "README.md", "deleted": True}
    async with bot.engine.connect() as conn:
        moves = (await conn.execute(select(run_transitions.c.to_state).where(
            run_transitions.c.run_id == run_id).order_by(run_transitions.c.id))).scalars().all()
        kinds = (await conn.execute(select(run_events.c.kind).where(
            run_events.c.run_id == run_id))).scalars().all()
    assert moves == ["queued", "starting", "running", "succeeded"]
    assert "phase" in kinds
    # The gateway minted the clone's read-only token; the sandbox never saw it, and it is
    # revoked once the run has ended.
    [sandbox_token] = [t for t in fake_github.state.tokens.values() if t.repository_ids]
    assert sandbox_token.permissions["contents"] == "read"
    assert sandbox_token.repository_ids == frozenset({100})

    async def revoked() -> bool:
        return sandbox_token.revoked

    await until(revoked, seconds=10)
    assert bot.scheduler.health() is None


class LocalNamed(MemoryExecutor):
    """The memory executor, named as the local one: its sandboxes call back to this process."""

    name = "local"


async def test_the_local_executor_runs_on_one_replica_at_a_time(
        world: World, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(sched, "LOCAL_LEASE_SECONDS", 1.0)
    first = sched.Scheduler(world.engine, LocalNamed(), world.github, world.settings,
                            tick_seconds=0.05)  # renews its lease every tick
    await first.start()
    try:
        # A second replica on the same database waits once for the lease to run out; the
        # first renews it, so the second is refused, naming the holder.
        second = sched.Scheduler(world.engine, LocalNamed(), world.github, world.settings,
                                 tick_seconds=3600)
        with pytest.raises(sched.StartRefused, match="runs sandboxes with the local executor"):
            await second.start()
        # The first dies (no more ticks, no release): the next one waits for its lease to run
        # out and takes over.
        await first._ticker.close()  # noqa: SLF001 - a process that stopped ticking
        third = sched.Scheduler(world.engine, LocalNamed(), world.github, world.settings,
                                tick_seconds=3600)
        await third.start()
        monkeypatch.setattr(sched, "LOCAL_LEASE_SECONDS", 60.0)
        await third.tick()  # a long lease now, so the rest of the test cannot outlive it
        try:
            # Were the first alive after all, its next tick would see the lease gone: it
            # launches nothing more, and says so.
            run_id = await world.queue()
            await first.tick()
            assert "the local executor's lease went to another process" in caplog.text
            assert await world.state(run_id) == "queued"
            await third.tick()
            assert await world.state(run_id) == "starting"
        finally:
            await third.close()
    finally:
        await first.close()


async def test_other_executors_take_no_lease(world: World) -> None:
    other = sched.Scheduler(world.engine, MemoryExecutor(), world.github, world.settings,
                            tick_seconds=3600)
    await other.start()
    await world.scheduler.start()  # two at once: fine for executors that are not local
    try:
        holder, _ = await leases.loop_holder(world.engine, sched.LOCAL_EXECUTOR_LEASE)
        assert holder is None
        run_id = await world.queue()
        await other.tick()
        assert await world.state(run_id) == "starting"
    finally:
        await other.close()
