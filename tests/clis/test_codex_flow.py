"""From a label to a pull request with the real Codex: the local executor runs the sandbox as
an unprivileged user, and the in-process gateway forwards its Responses requests to the OpenAI
double with the operator's key, which the sandbox never holds."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.config.settings import Settings
from tests.clis.codex_scenarios import NO_RETRIES, code, plan
from tests.clis.support import (
    CliWorld,
    assert_failed_with,
    assert_pull_request,
    point_flow_at,
    run_flow,
)
from tests.fakes.github import FakeGitHub
from tests.fakes.model_openai import OpenAIDouble, Turn, Usage, openai_failure
from tests.flow.harness import Flow

pytestmark = pytest.mark.slow

OPERATOR_KEY = "sk-proj-operator0123456789abcdefT3BlbkFJoperator0123456789abcdef"
SUMMARY = "Added a greeting script and retired docs/old.md."
GREET = "*** Begin Patch\n*** Add File: src/greet.py\n+print('hi')\n*** End Patch\n"
README = ("*** Begin Patch\n*** Update File: README.md\n@@\n-# hello\n+# hello, world\n"
          "*** End Patch\n")
RETIRE = "*** Begin Patch\n*** Delete File: docs/old.md\n*** End Patch\n"


def codex_flow_executor(flow: Flow, world: CliWorld, tmp_path: Path, model_url: str) -> None:
    """Point the flow at the real Codex, run as the unprivileged account by the local
    executor, with the in-process gateway forwarding to the model double. Codex is told not
    to retry (its own config file, in CODEX_HOME), so an error ends the run at once."""
    codex_home = world.run_dir()
    (codex_home / "config.toml").write_text(NO_RETRIES)
    world.account.own(codex_home)
    point_flow_at(flow, world, tmp_path, "codex",
                  {"openai_url": model_url, "openai_api_key": OPERATOR_KEY},
                  {"CODEX_HOME": str(codex_home)})


def script(held: asyncio.Event) -> list[Turn]:
    return [
        Turn(text="Planning the greeting.",
             tool_calls=[code(plan(("Write greet.py", "in_progress"),
                                   ("Retire docs/old.md", "pending")),
                              ("exec_command", {"cmd": "env"}))],
             usage=Usage(input_tokens=900, output_tokens=50, cache_creation_input_tokens=700)),
        # Held until the check run shows the plan.
        Turn(tool_calls=[code(("apply_patch", GREET), ("apply_patch", README),
                              plan(("Write greet.py", "completed"),
                                   ("Retire docs/old.md", "in_progress")))],
             usage=Usage(input_tokens=60, output_tokens=80, cache_read_input_tokens=1600),
             hold=held),
        Turn(tool_calls=[code(("apply_patch", RETIRE),
                              plan(("Write greet.py", "completed"),
                                   ("Retire docs/old.md", "completed")))],
             usage=Usage(input_tokens=40, output_tokens=20, cache_read_input_tokens=1700)),
        Turn(text=SUMMARY, usage=Usage(input_tokens=30, output_tokens=30,
                                       cache_read_input_tokens=1800)),
    ]


async def test_label_to_pull_request_with_the_real_codex(
        fake_github: FakeGitHub, tmp_path: Path, make_settings: Callable[..., Settings],
        codex_world: CliWorld) -> None:
    held = asyncio.Event()
    async with OpenAIDouble(script(held)) as model:
        done = await run_flow(
            fake_github, tmp_path, make_settings,
            lambda flow: codex_flow_executor(flow, codex_world, tmp_path, model.base_url),
            plan_shows="Retire docs/old.md", held=held)

    assert_pull_request(done, SUMMARY)
    # The operator's key reached the provider, through the gateway, on every turn...
    assert model.turns_played == 4 and model.exhausted == 0
    assert {r.credential for r in model.requests} == {OPERATOR_KEY}
    assert {r.path for r in model.requests} == {"/v1/responses"}
    # ... while the agent's own environment (its `env`, sent back as the tool's output) had
    # the run's gateway credential in its place, and the gateway as its provider.
    env_seen = model.main_requests[1].text
    assert "OPENAI_BASE_URL=http://127.0.0.1:" in env_seen
    assert "OPENAI_API_KEY=" in env_seen and OPERATOR_KEY not in env_seen
    stats = done.run.result["stats"]
    assert stats["agent_turns"] == 1
    assert stats["agent_input_tokens"] == 900 + 700 + 60 + 1600 + 40 + 1700 + 30 + 1800
    assert stats["agent_cached_input_tokens"] == 1600 + 1700 + 1800
    assert stats["agent_cache_write_input_tokens"] == 700
    assert stats["agent_output_tokens"] == 50 + 80 + 20 + 30


async def test_a_model_error_fails_the_run_with_codexs_reason_in_the_check_run(
        fake_github: FakeGitHub, tmp_path: Path, make_settings: Callable[..., Settings],
        codex_world: CliWorld) -> None:
    async with OpenAIDouble([Turn(failure=openai_failure(401))]) as model:
        done = await run_flow(
            fake_github, tmp_path, make_settings,
            lambda flow: codex_flow_executor(flow, codex_world, tmp_path, model.base_url))

    assert len(model.requests) == 1
    assert_failed_with(
        done, "Codex stopped (HTTP 401): unexpected status 401 Unauthorized: Incorrect API key")


async def test_the_real_codex_stops_at_its_budget_and_the_work_is_a_partial_draft(
        fake_github: FakeGitHub, tmp_path: Path, make_settings: Callable[..., Settings],
        codex_world: CliWorld) -> None:
    # The first turn writes a file and uses 1,650 tokens; the budget is 1,000, so the gateway
    # refuses the second request in OpenAI's own words (429 insufficient_quota), which
    # Codex does not retry.
    turns = [Turn(tool_calls=[code(("apply_patch", GREET))],
                  usage=Usage(input_tokens=900, output_tokens=50,
                              cache_creation_input_tokens=700)),
             Turn(text="Never sent: the budget is spent.")]
    async with OpenAIDouble(turns) as model:
        done = await run_flow(
            fake_github, tmp_path, make_settings,
            lambda flow: codex_flow_executor(flow, codex_world, tmp_path, model.base_url),
            comment="/agent run --budget 1000 add a greeting")
    flow, run = done.flow, done.run

    assert run.state == "budget_exceeded", run.error
    assert run.budget_reached == "1,000 tokens"
    assert model.turns_played == 1 and len(model.requests) == 1
    [pull] = flow.pulls()
    assert pull.title == "[partial] Add a greeting" and pull.pull.draft
    # Where Codex stopped: its own words for the gateway's 429 insufficient_quota.
    assert "**Partial work.**" in pull.body
    assert ("The agent exited with code 1. Codex stopped: Quota exceeded. Check your plan and "
            "billing details.\n") in pull.body
    assert flow.files(run.branch)["src/greet.py"] == b"print('hi')\n"
    [check] = flow.check_runs()
    assert check.conclusion == "neutral"
