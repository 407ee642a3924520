"""What a repository and an operator choose reaches the real Claude Code's model: a profile
picked by a label (its system prompt file in the request's system prompt, its instructions in
the prompt, the repository's CLAUDE.md left to Claude Code), and an OAuth token as the
operator's Anthropic credential."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.config.settings import Settings
from bot.store.tables import run_events
from tests.clis.conftest import claude_world, cli_scratch  # noqa: F401 (fixtures)
from tests.clis.support import CliWorld
from tests.clis.test_claude_flow import claude_flow_executor
from tests.fakes import payloads as p
from tests.fakes.github import FakeGitHub
from tests.fakes.model_anthropic import AnthropicDouble, ToolCall, Turn, Usage
from tests.flow.harness import REPO, Flow

pytestmark = pytest.mark.slow

SYSTEM_PROMPT = "You serve the backend team. Every new module starts with a docstring."
CLAUDE_MD = "# Memory\nThe repository's own note for Claude Code: indent with four spaces.\n"
CONFIG = b"""\
setup: [echo set-up-for-every-run]
profiles:
  backend:
    model: claude-haiku-4-5
    setup: [echo set-up-by-the-profile]
    system_prompt: docs/agents/backend.md
    instructions: Run the backend checks before you finish.
    timeout: 15m
"""


async def test_a_profile_label_gives_claude_code_the_repositorys_system_prompt(
        fake_github: FakeGitHub, tmp_path: Path, make_settings: Callable[..., Settings],
        claude_world: CliWorld) -> None:  # noqa: F811 (the imported fixture)
    script = [Turn(tool_calls=[ToolCall("Write", {"file_path": "{cwd}/src/api.py",
                                                  "content": '"""The API."""\n'})],
                   usage=Usage(input_tokens=100, output_tokens=20)),
              Turn(text="Added src/api.py.", usage=Usage(input_tokens=50, output_tokens=10))]
    async with AnthropicDouble(script) as model:
        flow = await Flow.create(fake_github, tmp_path, make_settings,
                                 f"sqlite+aiosqlite:///{tmp_path / 'flow.db'}")
        flow.fake.push(REPO, {".github/agentbot.yml": CONFIG,
                              "docs/agents/backend.md": SYSTEM_PROMPT.encode() + b"\n",
                              "CLAUDE.md": CLAUDE_MD.encode()})
        claude_flow_executor(flow, claude_world, tmp_path, model.url,
                             CLAUDE_CODE_MAX_RETRIES="0")
        await flow.start()
        try:
            await flow.deliver("issues", p.issues_labeled(label="agent:backend"))
            run = await flow.settled((await flow.wait_for_run()).id, 90)
            async with flow.bot.engine.connect() as conn:  # type: ignore[union-attr]
                logs = json.dumps([row.data for row in await conn.execute(
                    select(run_events.c.data).where(run_events.c.run_id == run.id,
                                                    run_events.c.kind == "log"))])
        finally:
            await flow.close()
        requests = [r for r in model.requests if r.path == "/v1/messages"
                    and any(m.get("role") == "user" for m in r.body.get("messages", []))]

    assert (run.state, run.error) == ("succeeded", None), run.error
    assert (run.config["profile"], run.timeout_seconds) == ("backend", 900)
    # The profile's setup ran instead of the top level's, and its model is the one asked for.
    assert "set-up-by-the-profile" in logs and "set-up-for-every-run" not in logs
    assert requests and {r.body["model"] for r in requests} == {"claude-haiku-4-5"}
    for request in requests:
        # The profile's file, in the system prompt after Claude Code's own (appended, not
        # replacing it), and nowhere in the conversation.
        system = json.dumps(request.body["system"])
        assert SYSTEM_PROMPT in system
        assert system.index("Claude Code") < system.index(SYSTEM_PROMPT)
        assert SYSTEM_PROMPT not in json.dumps(request.body["messages"])
    conversation = json.dumps(requests[0].body["messages"])
    assert "Run the backend checks before you finish." in conversation
    # CLAUDE.md is Claude Code's to read (it sends it as its own context), and stays as it was.
    assert "indent with four spaces" in conversation
    files = flow.files(run.branch)
    assert files["CLAUDE.md"] == CLAUDE_MD.encode() and files["src/api.py"] == b'"""The API."""\n'


OAUTH_TOKEN = "sk-ant-oat01-" + "t" * 95 + "AA"


async def test_claude_code_runs_on_the_operators_oauth_token(
        fake_github: FakeGitHub, tmp_path: Path, make_settings: Callable[..., Settings],
        claude_world: CliWorld) -> None:  # noqa: F811 (the imported fixture)
    """A Claude subscription's token instead of an API key: the gateway sends it upstream as
    Anthropic expects an OAuth token, and the sandbox still holds only its gateway credential."""
    script = [Turn(tool_calls=[ToolCall("Write", {"file_path": "{cwd}/NOTE.md",
                                                  "content": "noted\n"})]),
              Turn(text="Wrote NOTE.md.")]
    async with AnthropicDouble(script) as model:
        flow = await Flow.create(fake_github, tmp_path, make_settings,
                                 f"sqlite+aiosqlite:///{tmp_path / 'flow.db'}")
        claude_flow_executor(flow, claude_world, tmp_path, model.url,
                             CLAUDE_CODE_MAX_RETRIES="0")
        flow.settings = flow.settings.model_copy(update={
            "anthropic_api_key": None, "claude_code_oauth_token": OAUTH_TOKEN,
            "model_providers": None})
        await flow.start()
        try:
            await flow.deliver("issues", p.issues_labeled())
            run = await flow.settled((await flow.wait_for_run()).id, 90)
        finally:
            await flow.close()

    assert (run.state, run.error) == ("succeeded", None), run.error
    assert flow.files(run.branch)["NOTE.md"] == b"noted\n"
    messages = [r for r in model.requests if r.path == "/v1/messages"]
    assert messages
    for request in messages:
        assert request.headers["authorization"] == f"Bearer {OAUTH_TOKEN}"
        assert "x-api-key" not in request.headers
        assert "oauth-2025-04-20" in request.headers["anthropic-beta"].split(",")
