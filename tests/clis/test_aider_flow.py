"""From a label to a pull request with the real aider: the local executor runs the sandbox as
an unprivileged user, and the in-process gateway forwards its Messages requests to the
Anthropic double with the operator's key, which the sandbox never holds."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bot.config.settings import Settings
from tests.clis.support import (
    CliWorld,
    assert_failed_with,
    assert_pull_request,
    point_flow_at,
    run_flow,
)
from tests.fakes.github import FakeGitHub
from tests.fakes.model_anthropic import AnthropicDouble, Failure, Turn
from tests.flow.harness import Flow

pytestmark = pytest.mark.slow

OPERATOR_KEY = "sk-ant-api03-operator-key-0123456789abcdefghijklmnopqrstuvwxyz"
SUMMARY = "I added a greeting script, greeted the world in the README and removed docs/old.md."
# Edit blocks for the new and the changed file; the deletion is a command aider runs.
ANSWER = (f"{SUMMARY}\n\n"
          "src/greet.py\n```python\n<<<<<<< SEARCH\n=======\nprint('hi')\n>>>>>>> REPLACE\n"
          "```\n\n"
          "README.md\n```\n<<<<<<< SEARCH\n# hello\n=======\n# hello, world\n>>>>>>> REPLACE\n"
          "```\n\n"
          "```bash\nrm docs/old.md\n```\n")


def aider_flow_executor(flow: Flow, world: CliWorld, tmp_path: Path, model_url: str) -> None:
    """Point the flow at the real aider, run as the unprivileged account by the local
    executor, with the in-process gateway forwarding to the model double."""
    point_flow_at(flow, world, tmp_path, "aider",
                  {"anthropic_url": model_url, "anthropic_api_key": OPERATOR_KEY})


async def test_label_to_pull_request_with_the_real_aider(
        fake_github: FakeGitHub, tmp_path: Path, make_settings: Callable[..., Settings],
        aider_world: CliWorld) -> None:
    # Asked twice: the files join the chat, then the blocks are applied.
    async with AnthropicDouble([Turn(text=ANSWER), Turn(text=ANSWER)], toolless=True) as model:
        done = await run_flow(
            fake_github, tmp_path, make_settings,
            lambda flow: aider_flow_executor(flow, aider_world, tmp_path, model.base_url),
            seconds=120)

    # aider has no plan to show (see docs/sandbox.md).
    assert_pull_request(done, SUMMARY)
    # The operator's key reached the provider, through the gateway, on every request.
    assert model.turns_played == 2 and model.exhausted == 0
    assert {r.credential for r in model.requests} == {OPERATOR_KEY}
    assert {r.path for r in model.requests} == {"/v1/messages"}
    stats = done.run.result["stats"]
    assert stats["agent_turns"] == 2 and stats["agent_input_tokens"] > 0


async def test_a_model_error_fails_the_run_with_aiders_reason_in_the_check_run(
        fake_github: FakeGitHub, tmp_path: Path, make_settings: Callable[..., Settings],
        aider_world: CliWorld) -> None:
    async with AnthropicDouble([Turn(failure=Failure.unauthorized())], toolless=True) as model:
        done = await run_flow(
            fake_github, tmp_path, make_settings,
            lambda flow: aider_flow_executor(flow, aider_world, tmp_path, model.base_url),
            seconds=120)

    assert len(model.requests) == 1
    assert_failed_with(done, "aider stopped (AuthenticationError): The API provider is not able "
                             "to authenticate you. Check your API key")
