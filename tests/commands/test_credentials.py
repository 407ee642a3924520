"""A trigger for an agent whose model the gateway has no key for is answered at once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bot.app import BOT_KEY, create_app
from bot.config.settings import Settings
from bot.intake.inbox import InboxOptions
from tests.commands.test_triggers import REPO, Harness
from tests.fakes import payloads as p
from tests.fakes.github import FakeGitHub


@pytest.fixture
async def make_harness(aiohttp_client: Any, fake_github: FakeGitHub, database_url: str,
                       make_settings: Callable[..., Settings]
                       ) -> Callable[..., Any]:
    fake_github.add_installation(p.INSTALLATION_ID, p.OWNER)
    fake_github.add_repo(p.OWNER, p.REPO, repo_id=p.REPO_ID)
    fake_github.add_issue(REPO, p.ISSUE_NUMBER)
    fake_github.add_collaborator(REPO, "octocat", "maintain")

    async def make(**keys: object) -> Harness:
        settings = make_settings(database_url=database_url, github_api_url=fake_github.url,
                                 github_app_id=fake_github.app_id,
                                 github_private_key=fake_github.private_key_pem,
                                 model_providers=None, **keys)
        app = create_app(settings, inbox_options=InboxOptions(poll_seconds=3600))
        client = await aiohttp_client(app)
        assert app[BOT_KEY].inbox is not None
        await app[BOT_KEY].inbox.close()
        return Harness(client, fake_github)

    return make


async def test_a_label_with_no_anthropic_credential_is_refused_naming_both_variables(
        make_harness: Callable[..., Any]) -> None:
    harness = await make_harness(openai_api_key="sk-proj-operator")
    await harness.deliver("issues", p.issues_labeled(number=p.ISSUE_NUMBER))
    assert await harness.runs() == []
    [reply] = harness.comments(p.ISSUE_NUMBER)
    assert reply.startswith(
        "@octocat agentbot did not start a run: the `claude` agent needs a key for Anthropic, "
        "and the operator has not given agentbot's gateway one: set `ANTHROPIC_API_KEY` or "
        "`CLAUDE_CODE_OAUTH_TOKEN` in the gateway's environment.")
    assert "sk-proj" not in reply


async def test_the_agent_a_command_names_decides_which_key_is_needed(
        make_harness: Callable[..., Any]) -> None:
    harness = await make_harness(claude_code_oauth_token="sk-ant-oat01-operator")
    await harness.deliver("issue_comment", harness.comment("/agent --agent codex add docs"))
    assert await harness.runs() == []
    [reply] = harness.comments(p.ISSUE_NUMBER)
    assert "the `codex` agent needs a key for OpenAI" in reply
    assert "`OPENAI_API_KEY` or `CODEX_API_KEY`" in reply

    # The OAuth token is Anthropic's credential: Claude Code's run goes ahead.
    await harness.deliver("issue_comment", harness.comment("/agent add docs"))
    [run] = await harness.runs()
    assert (run.agent, run.state) == ("claude", "queued")


async def test_aider_with_an_openai_model_needs_the_openai_key(
        make_harness: Callable[..., Any]) -> None:
    harness = await make_harness(anthropic_api_key="sk-ant-api03-operator")
    await harness.deliver("issue_comment", harness.comment(
        "/agent --agent aider --model gpt-4.1 add docs"))
    assert await harness.runs() == []
    assert "the `aider` agent needs a key for OpenAI" in harness.comments(p.ISSUE_NUMBER)[0]
    await harness.deliver("issue_comment", harness.comment(
        "/agent --agent aider --model anthropic/claude-sonnet-4-5 add docs"))
    [run] = await harness.runs()
    assert run.agent == "aider"
