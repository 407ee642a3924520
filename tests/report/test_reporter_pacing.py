"""The reporter under GitHub's write budget: a report waits its turn without holding up other
runs or installations, goes by priority, and carries the run's latest state when it goes."""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncEngine

from bot.github.client import GitHubApp
from bot.github.pacing import Priority, WriteBudget, WriteLimits
from bot.report.reporter import Reporter, write_turn
from bot.runs.ledger import get_run, transition
from bot.store.tables import RunState
from tests.fakes.github import FakeGitHub
from tests.github.test_pacing import HeldClock
from tests.runs.test_callbacks import queue_run

REPO = "octo-org/demo"
CHECK_CREATE = "POST /repos/{owner}/{repo}/check-runs"
CHECK_UPDATE = "PATCH /repos/{owner}/{repo}/check-runs/{check_run_id}"
COMMENT_CREATE = "POST /repos/{owner}/{repo}/issues/{issue_number}/comments"
COMMENT_UPDATE = "PATCH /repos/{owner}/{repo}/issues/comments/{comment_id}"


def world(fake: FakeGitHub) -> None:
    fake.add_installation(7, "octo-org")
    fake.add_repo("octo-org", "demo", repo_id=100)
    fake.add_installation(8, "other-org")
    fake.add_repo("other-org", "tools", repo_id=200)
    for number in range(1, 4):
        fake.add_issue(REPO, number)
    fake.add_issue("other-org/tools", 1)


def writes(fake: FakeGitHub) -> list[str]:
    """The content-creating requests GitHub received (token mints are the App's own)."""
    return [r.operation or "" for r in fake.requests
            if r.method != "GET" and not r.path.startswith("/app/")]


async def until(condition: object, rounds: int = 200) -> None:
    for _ in range(rounds):
        if condition():  # type: ignore[operator]
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition did not come true")


def paced(github_app: GitHubApp, per_minute: int) -> HeldClock:
    clock = HeldClock()
    github_app.writes = WriteBudget(WriteLimits(per_minute=per_minute, per_hour=1000), clock,
                                    clock.sleep)
    return clock


async def test_which_turn_a_report_takes(engine: AsyncEngine) -> None:
    run_id = await queue_run(engine)
    assert write_turn(await get_run(engine, run_id)) == (Priority.ACK, 2)
    await transition(engine, run_id, RunState.STARTING, "scheduled", last_reported_state="queued")
    assert write_turn(await get_run(engine, run_id)) == (Priority.PROGRESS, 1)
    await transition(engine, run_id, RunState.FAILED, "broke")
    assert write_turn(await get_run(engine, run_id)) == (Priority.RESULT, 2)


async def test_a_waiting_report_goes_once_with_the_latest_state(
        engine: AsyncEngine, fake_github: FakeGitHub, github_app: GitHubApp) -> None:
    world(fake_github)
    clock = paced(github_app, per_minute=2)
    reporter = Reporter(engine, github_app)
    run_id = await queue_run(engine)
    await reporter.start_due()
    await until(lambda: len(writes(fake_github)) == 2)  # check run and status comment
    assert sorted(writes(fake_github)) == [CHECK_CREATE, COMMENT_CREATE]
    await reporter.idle()
    # The minute is used up. The run moves on three times while its report waits.
    await transition(engine, run_id, RunState.STARTING, "scheduled")
    await reporter.start_due()
    await transition(engine, run_id, RunState.RUNNING, "running")
    await reporter.start_due()  # under way already: not a second report
    await transition(engine, run_id, RunState.FAILED, "broke", error="It broke.")
    await reporter.start_due()
    await asyncio.sleep(0.05)
    assert len(writes(fake_github)) == 2
    await clock.advance(60)
    await reporter.idle()
    # One turn, one report: the final one, straight from "queued".
    assert writes(fake_github)[2:] == [CHECK_UPDATE, COMMENT_UPDATE]
    [check] = fake_github.check_runs(REPO)
    assert (check.status, check.conclusion) == ("completed", "failure")
    assert (await get_run(engine, run_id)).last_reported_state == "failed"
    assert fake_github.content_refusals == 0


async def test_an_acknowledgement_goes_before_progress_and_other_installations_go_on(
        engine: AsyncEngine, fake_github: FakeGitHub, github_app: GitHubApp) -> None:
    world(fake_github)
    clock = paced(github_app, per_minute=2)
    reporter = Reporter(engine, github_app)
    first = await queue_run(engine, number=1)
    await reporter.tick()  # its acknowledgement: the minute's two writes
    await transition(engine, first, RunState.STARTING, "scheduled")
    await reporter.start_due()  # progress: waits
    await asyncio.sleep(0.02)
    second = await queue_run(engine, number=2)  # a new trigger: its acknowledgement waits too
    elsewhere = await queue_run(engine, number=1, installation_id=8, repo_id=200,
                                repo_full_name="other-org/tools")
    await reporter.start_due()
    # The other installation has a budget of its own: acknowledged at once.
    for _ in range(200):
        if (await get_run(engine, elsewhere)).last_reported_state == "queued":
            break
        await asyncio.sleep(0.01)
    assert (await get_run(engine, elsewhere)).last_reported_state == "queued"
    fake_github.requests.clear()
    await clock.advance(60)  # room for two writes: the acknowledgement's, not the progress
    await until(lambda: len(writes(fake_github)) == 2)
    await asyncio.sleep(0.05)
    assert sorted(writes(fake_github)) == [CHECK_CREATE, COMMENT_CREATE]
    assert (await get_run(engine, second)).last_reported_state == "queued"
    assert (await get_run(engine, first)).last_reported_state == "queued"
    await clock.advance(60)
    await reporter.idle()
    assert writes(fake_github)[2:] == [CHECK_UPDATE]
    assert (await get_run(engine, first)).last_reported_state == "starting"
