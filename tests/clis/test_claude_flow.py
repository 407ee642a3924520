"""From a label to a pull request with the real Claude Code: the local executor runs the
sandbox as an unprivileged user, and the in-process gateway forwards its model requests to the
Messages double with the operator's key, which the sandbox never holds."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.config.settings import Settings
from tests.clis.support import CliWorld, assert_pull_request, point_flow_at, run_flow
from tests.fakes.github import FakeGitHub
from tests.fakes.model_anthropic import AnthropicDouble, ToolCall, Turn, Usage
from tests.flow.harness import Flow

pytestmark = pytest.mark.slow

OPERATOR_KEY = "sk-ant-operator-0123456789abcdefghijklmnop"
SUMMARY = "Added a greeting script and retired docs/old.md."


def claude_flow_executor(flow: Flow, claude_world: CliWorld, tmp_path: Path, model_url: str,
                         **env: str) -> None:
    """Point the flow at the real Claude Code, run as the unprivileged account by the local
    executor, with the in-process gateway forwarding to the model double."""
    point_flow_at(flow, claude_world, tmp_path, "claude",
                  {"anthropic_url": model_url, "anthropic_api_key": OPERATOR_KEY},
                  {"DISABLE_AUTOUPDATER": "1", **env})


def script(held: asyncio.Event) -> list[Turn]:
    return [
        Turn(text="Planning the greeting.",
             tool_calls=[ToolCall("TaskCreate", {"subject": "Write greet.py",
                                                 "description": "print a greeting",
                                                 "activeForm": "Writing greet.py"}),
                         ToolCall("Bash", {"command": "env", "description": "Look around"}),
                         ToolCall("Read", {"file_path": "{cwd}/README.md"})],
             usage=Usage(input_tokens=900, output_tokens=50, cache_creation_input_tokens=700)),
        # Held until the check run shows the plan.
        Turn(tool_calls=[ToolCall("TaskUpdate", {"taskId": "1", "status": "in_progress"}),
                         ToolCall("Write", {"file_path": "{cwd}/src/greet.py",
                                            "content": "print('hi')\n"}),
                         ToolCall("Edit", {"file_path": "{cwd}/README.md",
                                           "old_string": "# hello",
                                           "new_string": "# hello, world"}),
                         ToolCall("Bash", {"command": "rm docs/old.md"})],
             usage=Usage(input_tokens=60, output_tokens=80, cache_read_input_tokens=1600),
             hold=held),
        Turn(tool_calls=[ToolCall("TaskUpdate", {"taskId": "1", "status": "completed"})],
             usage=Usage(input_tokens=40, output_tokens=20, cache_read_input_tokens=1700)),
        Turn(text=SUMMARY, usage=Usage(input_tokens=30, output_tokens=30,
                                       cache_read_input_tokens=1800)),
    ]


async def test_label_to_pull_request_with_the_real_claude_code(
        fake_github: FakeGitHub, tmp_path: Path, make_settings: Callable[..., Settings],
        claude_world: CliWorld) -> None:
    held = asyncio.Event()
    async with AnthropicDouble(script(held)) as model:
        done = await run_flow(
            fake_github, tmp_path, make_settings,
            lambda flow: claude_flow_executor(flow, claude_world, tmp_path, model.url,
                                              CLAUDE_CODE_MAX_RETRIES="0"),
            plan_shows="Write greet.py", held=held)

    assert_pull_request(done, SUMMARY)
    run = done.run
    # The operator's key reached the provider, through the gateway, on every turn...
    assert model.turns_played == 4 and model.exhausted == 0
    assert {r.headers.get("x-api-key") for r in model.main_requests} == {OPERATOR_KEY}
    # ... while the agent's own environment (its `env`, sent back as the tool's result) had
    # the run's gateway credential in its place, and the gateway as its provider.
    env_seen = model.main_requests[1].text
    assert "ANTHROPIC_BASE_URL=http://127.0.0.1:" in env_seen
    assert OPERATOR_KEY not in env_seen
    assert "ANTHROPIC_API_KEY=" in env_seen
    assert run.result["stats"]["agent_cache_read_input_tokens"] == 1600 + 1700 + 1800
    assert run.result["stats"]["agent_terminal_reason"] == "completed"


async def test_the_real_claude_code_stops_at_its_budget_and_the_work_is_a_partial_draft(
        fake_github: FakeGitHub, tmp_path: Path, make_settings: Callable[..., Settings],
        claude_world: CliWorld) -> None:
    # The first turn writes a file and uses 1,650 tokens; the budget is 1,000, so the gateway
    # refuses the second request (the CLI's default retries left on) in Anthropic's own words.
    turns = [Turn(tool_calls=[ToolCall("Write", {"file_path": "{cwd}/src/greet.py",
                                                 "content": "print('hi')\n"})],
                  usage=Usage(input_tokens=900, output_tokens=50,
                              cache_creation_input_tokens=700)),
             Turn(text="Never sent: the budget is spent.")]
    async with AnthropicDouble(turns) as model:
        done = await run_flow(
            fake_github, tmp_path, make_settings,
            lambda flow: claude_flow_executor(flow, claude_world, tmp_path, model.url),
            comment="/agent run --budget 1000 add a greeting")
    flow, run = done.flow, done.run

    assert run.state == "budget_exceeded", run.error
    assert run.budget_reached == "1,000 tokens"
    assert model.turns_played == 1 and len(model.main_requests) == 1  # never retried
    assert {r.headers.get("x-api-key") for r in model.main_requests} == {OPERATOR_KEY}
    [pull] = flow.pulls()
    assert pull.title == "[partial] Add a greeting" and pull.pull.draft
    # Where the agent stopped: the CLI's own words for the gateway's refusal.
    assert "**Partial work.**" in pull.body and "Claude Code stopped (api_error, HTTP 402)" \
        in pull.body and "it reached its model budget of 1,000 tokens" in pull.body
    assert flow.files(run.branch)["src/greet.py"] == b"print('hi')\n"
    [check] = flow.check_runs()
    assert check.conclusion == "neutral"
    assert check.output["title"] == f"Budget reached: partial draft pull request #{pull.number}"
    assert "reached its model budget of 1,000 tokens" in check.output["summary"]
    assert "**Budget:** 1,000 tokens" in check.output["summary"]
