"""The reporter: only on change, progress at most every 10 s, GitHub's size limits, backoff."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.github.client import GitHubApp
from bot.markdown import COMMENT_MAX_CHARS
from bot.report.reporter import Reporter, load_progress
from bot.report.text import OUTPUT_MAX, Progress, Usage, check_run_body, comment_body
from bot.runs.ledger import get_run, transition
from bot.store.tables import RunState, gateway_audit, run_events, run_usage, runs
from tests.fakes.github import FakeGitHub
from tests.runs.test_callbacks import queue_run

REPO = "octo-org/demo"
CHECK_UPDATE = "PATCH /repos/{owner}/{repo}/check-runs/{check_run_id}"
COMMENT_UPDATE = "PATCH /repos/{owner}/{repo}/issues/comments/{comment_id}"


class Clock:
    def __init__(self) -> None:
        self.now = dt.datetime(2026, 11, 21, 12, 0, tzinfo=dt.UTC)
        self.mono = 1000.0

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)
        self.mono += seconds


@pytest.fixture
def world(fake_github: FakeGitHub) -> FakeGitHub:
    fake_github.add_installation(7, "octo-org")
    fake_github.add_repo("octo-org", "demo", repo_id=100)
    fake_github.add_issue(REPO, 1)
    return fake_github


def reporter(engine: AsyncEngine, github: GitHubApp, clock: Clock) -> Reporter:
    return Reporter(engine, github, clock=lambda: clock.now, monotonic=lambda: clock.mono)


async def event(engine: AsyncEngine, run_id: int, seq: int, kind: str,
                data: dict[str, Any]) -> None:
    async with engine.begin() as conn:
        await conn.execute(insert(run_events).values(
            run_id=run_id, seq=seq, ts=dt.datetime.now(dt.UTC), kind=kind, data=data))


def writes(fake: FakeGitHub) -> list[str]:
    return [r.operation or "" for r in fake.requests if r.method != "GET"]


async def test_reports_only_on_change_and_progress_at_most_every_10s(
        engine: AsyncEngine, world: FakeGitHub, github_app: GitHubApp) -> None:
    clock = Clock()
    rep = reporter(engine, github_app, clock)
    run_id = await queue_run(engine)
    await rep.tick()
    [check] = world.check_runs(REPO)
    assert (check.status, check.external_id, check.output["title"]) == ("queued", str(run_id),
                                                                         "Queued")
    assert [a["identifier"] for a in check.actions] == ["cancel"]
    [comment] = [c for c in world.comments(REPO, 1) if c.via_app]
    assert "in progress" in comment.body and f"/runs/{check.id}" in comment.body
    world.requests.clear()
    await rep.tick()
    assert world.requests == []  # nothing changed: nothing sent, nothing even read

    await transition(engine, run_id, RunState.STARTING, "scheduled")
    await transition(engine, run_id, RunState.RUNNING, "sandbox running")
    await rep.tick()
    assert writes(world) == [CHECK_UPDATE]  # the comment waits for the outcome
    assert check.status == "in_progress"

    await event(engine, run_id, 1, "phase", {"phase": "agent", "status": "started"})
    await event(engine, run_id, 2, "todo", {"items": [
        {"text": "Read the code", "status": "completed"},
        {"text": "Write the fix", "status": "in_progress"},
        {"text": "Add a test", "status": "pending"}]})
    await event(engine, run_id, 3, "tool", {"name": "bash", "status": "started",
                                            "input": "pytest -q"})
    await event(engine, run_id, 4, "log", {"source": "agent", "stream": "stdout", "text": "x"})
    world.requests.clear()
    clock.advance(3)
    await rep.tick()
    assert writes(world) == []  # new progress, but the last update was 3 s ago
    clock.advance(7)
    await rep.tick()
    assert writes(world) == [CHECK_UPDATE]
    summary = check.output["summary"]
    assert "- [x] Read the code" in summary and "- [ ] **Write the fix**" in summary
    assert "- [ ] Add a test" in summary and "**Now:** `bash` started: pytest -q" in summary
    assert check.output["title"] == "Running: agent"
    world.requests.clear()
    clock.advance(30)
    await event(engine, run_id, 5, "log", {"source": "agent", "stream": "stdout", "text": "y"})
    await rep.tick()
    assert writes(world) == []  # log lines are not progress worth an update

    await transition(engine, run_id, RunState.FAILED, "agent failed", error="It broke.")
    await rep.tick()
    assert sorted(writes(world)) == [CHECK_UPDATE, COMMENT_UPDATE]
    assert (check.status, check.conclusion) == ("completed", "failure")
    assert [a["identifier"] for a in check.actions] == ["retry"]
    [comment] = [c for c in world.comments(REPO, 1) if c.via_app]
    assert "It broke." in comment.body and "/agent retry" in comment.body
    run = await get_run(engine, run_id)
    assert (run.last_reported_state, run.check_run_id) == ("failed", check.id)


async def test_many_running_runs_share_the_progress_budget(
        engine: AsyncEngine, world: FakeGitHub, github_app: GitHubApp) -> None:
    clock = Clock()
    rep = reporter(engine, github_app, clock)
    ids = []
    for number in range(1, 11):
        world.add_issue(REPO, number) if number > 1 else None
        run_id = await queue_run(engine, number=number)
        await transition(engine, run_id, RunState.STARTING, "scheduled")
        await transition(engine, run_id, RunState.RUNNING, "running")
        ids.append(run_id)
    await rep.tick()
    for run_id in ids:
        await event(engine, run_id, 1, "message", {"text": "thinking"})
    world.requests.clear()
    clock.advance(11)
    await rep.tick()
    assert writes(world) == []  # ten runs: each may update every 20 s, not every 10 s
    clock.advance(10)
    await rep.tick()
    assert writes(world) == [CHECK_UPDATE] * 10


async def test_a_failing_report_backs_off_and_recovers(
        engine: AsyncEngine, world: FakeGitHub, github_app: GitHubApp) -> None:
    clock = Clock()
    rep = reporter(engine, github_app, clock)
    run_id = await queue_run(engine)
    world.fail_next("POST", "/repos/{owner}/{repo}/check-runs", 422)
    await rep.tick()
    assert world.check_runs(REPO) == []
    world.requests.clear()
    await rep.tick()
    assert world.requests == []  # waits out its backoff
    clock.advance(6)
    await rep.tick()
    assert len(world.check_runs(REPO)) == 1
    assert (await get_run(engine, run_id)).last_reported_state == "queued"


async def test_a_pull_request_run_reports_on_the_head_sha(
        engine: AsyncEngine, world: FakeGitHub, github_app: GitHubApp) -> None:
    pull = world.add_pull(REPO, head_ref="feature")
    run_id = await queue_run(engine, number=pull.number, is_pull_request=True,
                             head_ref="feature", base_ref="feature",
                             base_sha=pull.pull.head_sha)
    await reporter(engine, github_app, Clock()).tick()
    [check] = world.check_runs(REPO)
    assert check.head_sha == pull.pull.head_sha
    run = await get_run(engine, run_id)
    assert run.base_tree == world.repo(REPO).git.read_commit(pull.pull.head_sha)["tree"]


async def test_texts_stay_within_githubs_limits(engine: AsyncEngine) -> None:
    run_id = await queue_run(engine, title="t" * 10_000)
    async with engine.begin() as conn:
        await conn.execute(update(runs).where(runs.c.id == run_id).values(
            state="failed", error="e" * 200_000, started_at=dt.datetime.now(dt.UTC),
            finished_at=dt.datetime.now(dt.UTC)))
    run = await get_run(engine, run_id)
    plan = [{"text": "step " * 500, "status": "pending"}] * 500
    body = check_run_body(run, Progress(seq=1, plan=plan, step="s" * 100_000),
                          dt.datetime.now(dt.UTC))
    assert len(body["output"]["summary"]) <= OUTPUT_MAX
    assert len(body["output"]["title"]) <= 250
    assert "… (truncated)" in body["output"]["summary"]  # the 200 kB error was cut
    text = comment_body(run, "https://github.com/x/runs/1", dt.datetime.now(dt.UTC))
    assert len(text) <= COMMENT_MAX_CHARS
    assert text.endswith(f"<!-- agentbot:status_comment:{run_id} -->")


async def test_the_gateways_usage_and_refused_hosts_reach_the_check_run_and_comment(
        engine: AsyncEngine, world: FakeGitHub, github_app: GitHubApp) -> None:
    run_id = await queue_run(engine, number=1, installation_id=7, repo_id=100,
                             repo_full_name=REPO)
    now = dt.datetime.now(dt.UTC)
    async with engine.begin() as conn:
        for model, tokens, cost in (("claude-sonnet-4-5", 1000, 0.25),
                                    ("claude-haiku-4-5", 20, 0.0001),
                                    ("claude-sonnet-4-5", 234, 0.5)):
            await conn.execute(insert(run_usage).values(
                run_id=run_id, at=now, provider="anthropic", model=model,
                input_tokens=tokens, output_tokens=tokens // 2, cache_read_tokens=7,
                cache_write_tokens=1, cost=cost))
        targets = [("evil.example", 443, "refused"), ("pypi.org", 443, "allowed"),
                   ("evil.example", 443, "refused"), ("`x`](http://a)", 80, "refused")]
        for host, port, verdict in targets:
            await conn.execute(insert(gateway_audit).values(
                run_id=run_id, at=now, kind="egress",
                data={"host": host, "port": port, "verdict": verdict}))
    progress = await load_progress(engine, run_id)
    assert progress.usage == Usage(input=1254, output=627, cache_read=21, cache_write=3,
                                   models=("claude-haiku-4-5", "claude-sonnet-4-5"),
                                   cost=pytest.approx(0.7501), unpriced=False)
    assert progress.refused == [("evil.example:443", 2), ("`x`](http://a):80", 1)]

    await transition(engine, run_id, RunState.STARTING, "test")
    await transition(engine, run_id, RunState.RUNNING, "test")
    await reporter(engine, github_app, Clock()).report(run_id)
    [check] = world.check_runs(REPO)
    summary = check.output["summary"]
    assert ("**Model usage:** 1,254 input, 627 output, 21 cache read and 3 cache write "
            "tokens (`claude-haiku-4-5`, `claude-sonnet-4-5`), about $0.75") in summary
    assert "- `evil.example:443` (2 times)\n" in summary
    # A hostile host name stays inside its code span: no link is made of it.
    assert "- `` `x`](http://a):80 ``\n" in summary
    assert "pypi.org" not in summary and "network.allow" in summary

    await transition(engine, run_id, RunState.FAILED, "test", error="boom")
    await reporter(engine, github_app, Clock()).report(run_id)
    [comment] = world.comments(REPO, 1)
    assert "**Model usage:** 1,254 input" in comment.body
