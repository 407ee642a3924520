"""From a label to a pull request with the real OpenCode: the local executor runs the sandbox
as an unprivileged user, and the in-process gateway forwards its Messages requests to the
Anthropic double with the operator's key, which the sandbox never holds."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.config.settings import Settings
from tests.clis.opencode_scenarios import bash, todos, write
from tests.clis.support import (
    CliWorld,
    assert_failed_with,
    assert_pull_request,
    point_flow_at,
    run_flow,
)
from tests.fakes.github import FakeGitHub
from tests.fakes.model_anthropic import AnthropicDouble, Failure, ToolCall, Turn, Usage
from tests.flow.harness import Flow

pytestmark = pytest.mark.slow

OPERATOR_KEY = "sk-ant-api03-operator-key-0123456789abcdefghijklmnopqrstuvwxyz"
SUMMARY = "Added a greeting script and retired docs/old.md."


def opencode_flow_executor(flow: Flow, world: CliWorld, tmp_path: Path, model_url: str) -> None:
    """Point the flow at the real OpenCode, run as the unprivileged account by the local
    executor, with the in-process gateway forwarding to the model double."""
    point_flow_at(flow, world, tmp_path, "opencode",
                  {"anthropic_url": model_url, "anthropic_api_key": OPERATOR_KEY})


def script(held: asyncio.Event) -> list[Turn]:
    return [
        Turn(text="Planning the greeting.",
             tool_calls=[todos(("Write greet.py", "in_progress"),
                               ("Retire docs/old.md", "pending")),
                         bash("env", "Show the environment")],
             usage=Usage(input_tokens=900, output_tokens=50, cache_creation_input_tokens=700)),
        # Held until the check run shows the plan.
        Turn(tool_calls=[write("src/greet.py", "print('hi')\n"),
                         ToolCall("edit", {"filePath": "{cwd}/README.md", "oldString": "# hello",
                                           "newString": "# hello, world"}),
                         todos(("Write greet.py", "completed"),
                               ("Retire docs/old.md", "in_progress"))],
             usage=Usage(input_tokens=60, output_tokens=80, cache_read_input_tokens=1600),
             hold=held),
        Turn(tool_calls=[bash("rm docs/old.md", "Retire docs/old.md"),
                         todos(("Write greet.py", "completed"),
                               ("Retire docs/old.md", "completed"))],
             usage=Usage(input_tokens=40, output_tokens=20, cache_read_input_tokens=1700)),
        Turn(text=SUMMARY, usage=Usage(input_tokens=30, output_tokens=30,
                                       cache_read_input_tokens=1800)),
    ]


async def test_label_to_pull_request_with_the_real_opencode(
        fake_github: FakeGitHub, tmp_path: Path, make_settings: Callable[..., Settings],
        opencode_world: CliWorld) -> None:
    held = asyncio.Event()
    async with AnthropicDouble(script(held)) as model:
        done = await run_flow(
            fake_github, tmp_path, make_settings,
            lambda flow: opencode_flow_executor(flow, opencode_world, tmp_path, model.base_url),
            plan_shows="Retire docs/old.md", held=held)

    assert_pull_request(done, SUMMARY)
    # The operator's key reached the provider, through the gateway, on every request...
    assert model.turns_played == 4 and model.exhausted == 0
    assert {r.credential for r in model.requests} == {OPERATOR_KEY}
    assert {r.path for r in model.requests} == {"/v1/messages"}
    # ... while the agent's own environment (its `env`, sent back as the tool's output) had
    # the run's gateway credential in its place, and the gateway as its provider.
    env_seen = model.main_requests[1].text
    assert "ANTHROPIC_BASE_URL=http://127.0.0.1:" in env_seen
    assert "ANTHROPIC_API_KEY=" in env_seen and OPERATOR_KEY not in env_seen
    stats = done.run.result["stats"]
    assert stats["agent_turns"] == 4
    assert stats["agent_input_tokens"] == 900 + 60 + 40 + 30
    assert stats["agent_cached_input_tokens"] == 1600 + 1700 + 1800
    assert stats["agent_cache_write_input_tokens"] == 700
    assert stats["agent_output_tokens"] == 50 + 80 + 20 + 30


async def test_a_model_error_fails_the_run_with_opencodes_reason_in_the_check_run(
        fake_github: FakeGitHub, tmp_path: Path, make_settings: Callable[..., Settings],
        opencode_world: CliWorld) -> None:
    async with AnthropicDouble([Turn(failure=Failure.unauthorized())]) as model:
        done = await run_flow(
            fake_github, tmp_path, make_settings,
            lambda flow: opencode_flow_executor(flow, opencode_world, tmp_path, model.base_url))

    assert len(model.main_requests) == 1  # a 401 is not retried
    assert_failed_with(done, "OpenCode stopped (HTTP 401): invalid x-api-key")
