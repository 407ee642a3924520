"""A run that spends its budget, end to end: the agent talks to its model through the gateway,
the gateway refuses it past the budget, and the work so far becomes a partial draft PR."""

from __future__ import annotations

import json
import secrets as random_secrets
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.config.settings import Settings
from tests.fakes import payloads as p
from tests.fakes.github import FakeGitHub
from tests.flow.harness import REPO, Flow
from tests.gateway.upstream import JSON_TYPE, Reply, Upstream, anthropic_message

pytestmark = pytest.mark.slow


@pytest.fixture
async def model(aiohttp_server: Any) -> tuple[Upstream, str]:
    upstream = Upstream()
    server = await aiohttp_server(upstream.app)
    return upstream, str(server.make_url("")).rstrip("/")


@pytest.fixture
async def flow(fake_github: FakeGitHub, tmp_path: Path, database_url: str,
               make_settings: Callable[..., Settings],
               model: tuple[Upstream, str]) -> AsyncIterator[Flow]:
    made = await Flow.create(fake_github, tmp_path, make_settings, database_url,
                             anthropic_url=model[1],
                             anthropic_api_key=f"sk-ant-api03-{random_secrets.token_urlsafe(30)}")
    await made.start()
    try:
        yield made
    finally:
        await made.close()


def turns(upstream: Upstream, count: int) -> None:
    """Each turn: 100 input and 50 output tokens of Sonnet ($0.00105)."""
    body = json.dumps(anthropic_message("ok", 100, 50)).encode()
    upstream.answer(*(Reply(headers={"Content-Type": JSON_TYPE}, chunks=[body], streamed=False)
                      for _ in range(count)))


async def test_a_spent_budget_publishes_the_work_so_far_as_a_partial_draft(
        flow: Flow, model: tuple[Upstream, str]) -> None:
    upstream, _ = model
    turns(upstream, 5)
    flow.plan(write={"src/greet.py": "print('hi')\n"}, model_turns=5)
    await flow.comment("/agent run --budget 300 add the greeting")
    run = await flow.settled((await flow.wait_for_run()).id)

    assert run.state == "budget_exceeded" and run.budget_reached == "300 tokens"
    assert (await flow.transitions(run.id))[-1] == "budget_exceeded"
    # Two turns of 150 tokens each went out; the third was refused at the gateway, with the
    # operator's key upstream and never the sandbox's credential.
    assert len(upstream.seen) == 2
    assert {seen.headers["x-api-key"] for seen in upstream.seen} == {
        flow.settings.anthropic_api_key}

    [pull] = flow.pulls()
    assert pull.title == "[partial] Add a greeting" and pull.pull.draft
    assert "**Partial work.**" in pull.body and "model budget (300 tokens)" in pull.body
    assert f"Part of #{p.ISSUE_NUMBER}" in pull.body and "Closes" not in pull.body
    assert "billing_error" in pull.body  # where the agent stopped, folded
    files = flow.files(run.branch)
    assert files["src/greet.py"] == b"print('hi')\n"
    assert (files["turn-0.txt"], files["turn-1.txt"]) == (b"turn 0\n", b"turn 1\n")
    assert "turn-2.txt" not in files
    commit = flow.fake.repo(p.OWNER + "/" + p.REPO).git.read_commit(run.commit_sha)
    assert commit["message"].startswith(f"Partial work of agentbot run {run.id}: Add a greeting")

    [check] = flow.check_runs()
    assert (check.status, check.conclusion) == ("completed", "neutral")
    assert check.output["title"] == f"Budget reached: partial draft pull request #{pull.number}"
    summary = check.output["summary"]
    assert "reached its model budget of 300 tokens" in summary
    assert ("**Model usage:** 200 input, 100 output, 0 cache read and 0 cache write tokens "
            "(`claude-sonnet-4-5-20250929`), about $0.0021") in summary
    assert "**Budget:** 300 tokens" in summary
    assert [a["identifier"] for a in check.actions] == ["retry"]
    [status] = flow.status_comments()
    assert "💰" in status.body and run.pr_url in status.body
    assert "/agent run --budget" in status.body


async def test_a_budget_spent_before_any_change_ends_without_a_pull_request(
        flow: Flow, model: tuple[Upstream, str]) -> None:
    upstream, _ = model
    turns(upstream, 1)
    flow.plan(model_turns=3, turn_files=False)
    await flow.comment("/agent run --budget 100 add the greeting")
    run = await flow.settled((await flow.wait_for_run()).id)
    assert run.state == "budget_exceeded" and run.pr_number is None
    assert len(upstream.seen) == 1 and flow.pulls() == []
    [check] = flow.check_runs()
    assert check.conclusion == "neutral" and check.output["title"] == "Budget reached"
    assert "had changed no file by then" in check.output["summary"]


async def test_partial_work_on_a_pull_request_goes_beside_it_not_onto_it(
        flow: Flow, model: tuple[Upstream, str]) -> None:
    upstream, _ = model
    turns(upstream, 1)
    pull = flow.fake.add_pull(REPO, head_ref="feature", files={"feature.txt": b"work\n"},
                              title="Add the feature")
    head = pull.pull.head_sha
    flow.plan(write={"feature.txt": "half better\n"}, model_turns=2, turn_files=False)
    await flow.comment("/agent --budget 100 make it better", number=pull.number,
                       on_pull_request=True)
    run = await flow.settled((await flow.wait_for_run()).id)
    assert run.state == "budget_exceeded"
    assert flow.branches()["feature"] == head  # the pull request's branch is untouched
    assert run.branch == f"agentbot/{pull.number}-partial"
    assert flow.files(run.branch)["feature.txt"] == b"half better\n"
    assert flow.fake.repo(REPO).git.read_commit(run.commit_sha)["parents"] == [head]
    partial = next(p_ for p_ in flow.pulls() if p_.number == run.pr_number)
    assert partial.title == "[partial] Add the feature" and partial.pull.draft
    assert (partial.pull.base_ref, partial.pull.head_ref) == ("feature", run.branch)
    [check] = flow.check_runs()
    assert check.output["title"] == f"Budget reached: partial draft pull request #{partial.number}"
