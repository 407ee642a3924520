"""What the check run and the status comment show of a run that waits for approval, and of
one denied or expired."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncEngine

from bot.github.client import GitHubApp
from bot.runs.ledger import Created, NewRun, create_run, transition
from bot.store.tables import RunState
from tests.fakes.github import FakeGitHub
from tests.report.test_reporter import REPO, Clock, reporter, world  # noqa: F401 (fixture)


async def awaiting_run(engine: AsyncEngine) -> int:
    outcome = await create_run(engine, NewRun(
        installation_id=7, repo_id=100, repo_full_name=REPO,
        clone_url="https://github.com/octo-org/demo.git", number=1, is_pull_request=False,
        base_ref="main", trigger="comment", sender_login="stranger", sender_id=2,
        delivery_id=str(uuid.uuid4()), agent="claude", timeout_seconds=600,
        instructions="add a flag",
        provenance={"author": "octocat", "author_writes": True, "requester": "stranger",
                    "sender_writes": False}), RunState.AWAITING_APPROVAL)
    assert isinstance(outcome, Created)
    return outcome.run_id


def status_comment(fake: FakeGitHub) -> str:
    [comment] = [c for c in fake.comments(REPO, 1) if c.via_app]
    return comment.body


async def test_waiting_offers_approve_and_deny_then_the_comment_follows_the_run(
        engine: AsyncEngine, world: FakeGitHub, github_app: GitHubApp) -> None:  # noqa: F811
    rep = reporter(engine, github_app, Clock())
    run_id = await awaiting_run(engine)
    await rep.tick()
    [check] = world.check_runs(REPO)
    assert (check.status, check.output["title"]) == ("queued",
                                                     "Waiting for a maintainer's approval")
    assert [a["identifier"] for a in check.actions] == ["approve", "deny"]
    assert all(len(a["label"]) <= 20 and len(a["description"]) <= 40 for a in check.actions)
    assert "@stranger who asked for it has no write access" in check.output["summary"]
    body = status_comment(world)
    assert "waits for a maintainer's approval" in body and "`/agent approve`" in body
    # Approved: the status comment no longer asks for an approval.
    await transition(engine, run_id, RunState.QUEUED, "approved by @octocat",
                     approved_by="octocat")
    await rep.tick()
    assert [a["identifier"] for a in check.actions] == ["cancel"]
    body = status_comment(world)
    assert "in progress" in body and "/agent approve" not in body
    # A change after the approval: waiting again, and the comment says so again.
    await transition(engine, run_id, RunState.AWAITING_APPROVAL, "the description changed")
    await rep.tick()
    assert "`/agent approve`" in status_comment(world)
    await transition(engine, run_id, RunState.DENIED, "denied by @octocat",
                     error="denied by @octocat")
    await rep.tick()
    assert (check.status, check.conclusion, check.actions) == ("completed", "skipped", [])
    assert check.output["title"] == "Denied"
    assert "The run was not started: denied by @octocat." in status_comment(world)


async def test_an_expired_request_completes_its_check_run(
        engine: AsyncEngine, world: FakeGitHub, github_app: GitHubApp) -> None:  # noqa: F811
    rep = reporter(engine, github_app, Clock())
    run_id = await awaiting_run(engine)
    await rep.tick()
    await transition(engine, run_id, RunState.EXPIRED, "expired",
                     error="nobody approved it within 7 days")
    await rep.tick()
    [check] = world.check_runs(REPO)
    assert (check.status, check.conclusion) == ("completed", "skipped")
    assert check.output["title"] == "Expired without an approval"
    assert "nobody approved it within 7 days" in status_comment(world)
