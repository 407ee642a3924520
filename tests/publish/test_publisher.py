"""The publisher on its own: GitHub's refusals, retries after a failure, drafts, reviews."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.config.settings import Settings
from bot.github.client import GitHubApp
from bot.publish.publisher import PR_BODY_MAX, Publisher, Refused
from bot.publish.queue import PUBLISH_ATTEMPTS, PublishQueue
from bot.runs.ledger import get_run, transition
from bot.store.tables import RunState, runs
from tests.fakes.github import FakeGitHub
from tests.runs.test_callbacks import queue_run

REPO = "octo-org/demo"


def result(files: dict[str, bytes], summary: str = "Did it.") -> dict[str, Any]:
    return {"status": "succeeded", "summary": summary, "commit_message": "Do it",
            "changes": [{"path": path, "mode": "100644",
                         "content_b64": base64.b64encode(data).decode()}
                        for path, data in files.items()], "stats": {}}


@pytest.fixture
def world(fake_github: FakeGitHub) -> FakeGitHub:
    fake_github.add_installation(7, "octo-org")
    fake_github.add_repo("octo-org", "demo", repo_id=100)
    fake_github.add_issue(REPO, 1)
    fake_github.add_collaborator(REPO, "octocat", "write")
    return fake_github


async def finished_run(engine: AsyncEngine, body: dict[str, Any], **fields: Any) -> Any:
    run_id = await queue_run(engine, **fields)
    await transition(engine, run_id, RunState.STARTING, "scheduled")
    async with engine.begin() as conn:
        await conn.execute(update(runs).where(runs.c.id == run_id).values(
            result=body, branch=f"agentbot/{fields.get('number', 1)}-fix-the-frobnicator"))
    return await get_run(engine, run_id)


@pytest.fixture
def publisher(engine: AsyncEngine, github_app: GitHubApp,
              make_settings: Callable[..., Settings]) -> Publisher:
    return Publisher(engine, github_app, make_settings())


async def test_a_failure_midway_is_retried_without_repeating_what_was_done(
        engine: AsyncEngine, world: FakeGitHub, publisher: Publisher) -> None:
    run = await finished_run(engine, result({"a.txt": b"a\n"}))
    world.fail_next("POST", "/repos/{owner}/{repo}/pulls", 502, times=4)  # past retries
    with pytest.raises(Exception) as failed:
        await publisher.publish(run)
    assert not isinstance(failed.value, Refused)
    published = await publisher.publish(await get_run(engine, run.id))
    ops = [r.operation for r in world.requests if r.method == "POST"]
    assert ops.count("POST /repos/{owner}/{repo}/git/commits") == 1
    assert ops.count("POST /repos/{owner}/{repo}/git/refs") == 1
    assert [i.number for i in world.pulls(REPO)] == [published.pr_number]


async def test_drafts_unsupported_fall_back_to_a_normal_pull_request(
        engine: AsyncEngine, world: FakeGitHub, publisher: Publisher) -> None:
    run = await finished_run(engine, result({"a.txt": b"a\n"}))
    world.fail_next("POST", "/repos/{owner}/{repo}/pulls", 422, body={
        "message": "Validation Failed", "errors": [{
            "resource": "PullRequest", "code": "custom",
            "message": "Draft pull requests are not supported in this repository."}]})
    published = await publisher.publish(run)
    [pull] = world.pulls(REPO)
    assert pull.number == published.pr_number and pull.pull.draft is False


async def test_a_refused_review_request_does_not_fail_the_run(
        engine: AsyncEngine, world: FakeGitHub, publisher: Publisher) -> None:
    run = await finished_run(engine, result({"a.txt": b"a\n"}), sender_login="outsider")
    published = await publisher.publish(run)
    [pull] = world.pulls(REPO)
    assert pull.number == published.pr_number and pull.pull.requested_reviewers == []


async def test_github_refusing_the_change_is_a_refusal_with_its_message(
        engine: AsyncEngine, world: FakeGitHub, publisher: Publisher) -> None:
    run = await finished_run(engine, result({"a.txt": b"a\n"}))
    world.fail_next("POST", "/repos/{owner}/{repo}/git/trees", 422, body={
        "message": "refusing to allow a GitHub App to create or update workflow without "
                   "workflows permission"})
    with pytest.raises(Refused, match="workflows permission"):
        await publisher.publish(run)


async def test_policy_refusal_names_rule_and_path_and_sends_nothing(
        engine: AsyncEngine, world: FakeGitHub, publisher: Publisher) -> None:
    run = await finished_run(engine, result({".github/workflows/ci.yml": b"on: push\n"}))
    world.requests.clear()
    with pytest.raises(Refused) as refused:
        await publisher.publish(run)
    assert "**protected_path** `.github/workflows/ci.yml`" in str(refused.value)
    assert world.requests == []


async def test_the_repo_config_can_unprotect_paths_and_caps_the_file_count(
        engine: AsyncEngine, world: FakeGitHub, publisher: Publisher) -> None:
    config = {"protected_paths": [], "max_changed_files": 1, "draft": True}
    run = await finished_run(engine, result({".github/workflows/ci.yml": b"on: push\n"}),
                             config=config)
    assert (await publisher.publish(run)).pr_number is not None
    two = await finished_run(engine, result({"a": b"1", "b": b"2"}), number=2,
                             config=config)
    with pytest.raises(Refused, match="too_many_files"):
        await publisher.publish(two)


async def test_a_long_summary_is_cut_to_fit_the_pull_request_body(
        engine: AsyncEngine, world: FakeGitHub, publisher: Publisher) -> None:
    run = await finished_run(engine, result({"a.txt": b"a\n"}, summary="x" * 65_536))
    await publisher.publish(run)
    [pull] = world.pulls(REPO)
    assert len(pull.body) <= PR_BODY_MAX
    assert "Closes #1" in pull.body and "(truncated)" in pull.body


class Broken:
    """A publisher whose GitHub is down for good."""

    def __init__(self) -> None:
        self.calls = 0

    async def publish(self, run: Any) -> Any:
        self.calls += 1
        raise ConnectionError("GitHub is unreachable")


async def test_publishing_gives_up_after_its_attempts_and_fails_the_run(
        engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bot.publish.queue.RETRY_BASE_SECONDS", 0.0)
    run = await finished_run(engine, result({"a.txt": b"a\n"}))
    finished: list[tuple[int, RunState, dict[str, Any]]] = []

    async def finish(run_id: int, state: RunState, reason: str, **values: Any) -> bool:
        finished.append((run_id, state, values))
        return await transition(engine, run_id, state, reason, **values)

    broken = Broken()
    queue = PublishQueue(engine, broken, finish)  # type: ignore[arg-type]
    await queue.enqueue(run.id)  # publishing starts in a task of its own
    await queue.idle()
    assert (await get_run(engine, run.id)).publish_state == "pending"
    while not finished:
        await queue.pending()
        await queue.idle()
    assert broken.calls == PUBLISH_ATTEMPTS
    [(run_id, state, values)] = finished
    assert (run_id, state, values["publish_state"]) == (run.id, RunState.FAILED, "failed")
    assert "GitHub is unreachable" in values["error"]
    await queue.pending()
    await queue.idle()
    assert broken.calls == PUBLISH_ATTEMPTS  # a final run is not tried again
