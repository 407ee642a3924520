"""The real aider, at the version sandbox/Dockerfile pins, through `python -m sandbox` against
the scripted Messages API double (its default Claude model with the run's keys); run as an
unprivileged user, as the image does."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from sandbox import exitcodes
from tests.clis.aider_scenarios import EDITS, FINAL, PROMPT, offline_model_info, the_edits
from tests.clis.support import SCRIPTED_CHANGES, CliWorld, RunnerOutcome
from tests.fakes.model_anthropic import AnthropicDouble, Failure, Turn
from tests.fakes.model_openai import OpenAIDouble
from tests.sandbox.support import GATEWAY_TOKEN, Site, make_site

pytestmark = pytest.mark.slow

RETRIES = 8  # aider's own after a retryable error: 0.25 s doubling while at most 60 s


@pytest.fixture
async def site(tmp_path: Path, aiohttp_server: Any, aider_world: CliWorld) -> Site:
    site = await make_site(tmp_path, aiohttp_server)
    site.tmp = aider_world.run_dir()
    return site


async def run_aider(world: CliWorld, site: Site, script: list[Turn]
                    ) -> tuple[RunnerOutcome, AnthropicDouble]:
    """One sandbox run of aider with the double where the gateway would be."""
    offline_model_info(site.tmp / "home")
    async with AnthropicDouble(script, prefix="/anthropic", toolless=True) as double:
        spec = replace(site.spec(agent="aider", prompt=PROMPT, timeout=120),
                       gateway_url=double.base_url)
        outcome = await world.run_sandbox(site.tmp, spec, env={"PWD": str(site.tmp)})
    return outcome, double


async def test_the_scripted_edit_blocks_become_the_changeset_events_and_stats(
        aider_world: CliWorld, site: Site) -> None:
    outcome, model = await run_aider(aider_world, site, the_edits())

    assert outcome.returncode == exitcodes.OK, outcome.stderr
    [result] = site.bot.results
    assert result["status"] == "succeeded"
    # Created and edited through edit blocks, deleted through the command aider ran.
    assert result["changes"] == SCRIPTED_CHANGES
    assert result["summary"] == FINAL
    tools = [(t["name"], t["status"], t["input"]) for t in site.bot.kinds("tool")]
    # The edits in either order (aider's is not fixed), then the command.
    assert sorted(tools[:2]) == [("edit", "completed", "README.md"),
                                 ("edit", "completed", "src/new_module.py")]
    assert tools[2:] == [("shell", "started", "rm old.txt"), ("shell", "completed", "rm old.txt")]
    assert [m["text"] for m in site.bot.kinds("message")] == [FINAL, FINAL]

    # aider's own counts (it counts tokens itself when streaming), rounded as it prints them.
    stats = result["stats"]
    assert stats["agent_turns"] == 2
    assert stats["agent_input_tokens"] > 2000 and stats["agent_output_tokens"] > 100
    assert stats["agent_cost_usd"] > 0
    assert model.turns_played == 2 and model.exhausted == 0
    assert {r.credential for r in model.requests} == {GATEWAY_TOKEN}
    assert {r.path for r in model.requests} == {"/anthropic/v1/messages"}
    assert model.main_requests[0].tool_names == []
    # The second request carries the files aider added to the chat.
    assert "Hello." in model.main_requests[1].text and EDITS in model.main_requests[1].text
    assert model.unknown == []


async def test_a_model_error_ends_the_run_with_aiders_reason(aider_world: CliWorld,
                                                             site: Site) -> None:
    """aider exits 0 after an error it does not retry; the parser fails the run in its words."""
    outcome, model = await run_aider(aider_world, site, [Turn(failure=Failure.unauthorized())])

    assert outcome.returncode == exitcodes.AGENT, outcome.stderr
    assert len(model.requests) == 1
    [result] = site.bot.results
    assert result["status"] == "failed"
    assert result["summary"] == ("aider stopped (AuthenticationError): The API provider is not "
                                 "able to authenticate you. Check your API key")
    assert not re.search(r"agw_\w+", outcome.stderr + outcome.stdout + str(site.bot.events))


@pytest.mark.parametrize("failure", [Failure.overloaded(), Failure.stream_cut()],
                         ids=["overloaded", "stream-cut"])
async def test_an_error_aider_retries_costs_a_request_not_the_run(
        aider_world: CliWorld, site: Site, failure: Failure) -> None:
    """aider tries again 0.25 s later (doubling up to a minute) after an overloaded provider
    or a cut stream; what was cut is no answer."""
    script = [Turn(text=EDITS, failure=failure), *the_edits()]
    outcome, model = await run_aider(aider_world, site, script)

    assert outcome.returncode == exitcodes.OK, outcome.stderr
    assert model.turns_played == 3 and model.exhausted == 0
    [result] = site.bot.results
    assert result["status"] == "succeeded" and result["summary"] == FINAL
    assert [c["path"] for c in result["changes"]] == ["README.md", "old.txt", "src/new_module.py"]
    assert result["stats"]["agent_turns"] == 2


async def test_a_gpt_model_goes_to_chat_completions_at_the_gateway(aider_world: CliWorld,
                                                                   site: Site) -> None:
    """Through litellm, at OPENAI_API_BASE (the gateway's /openai/v1), streaming."""
    offline_model_info(site.tmp / "home")
    async with OpenAIDouble(the_edits(), prefix="/openai", toolless=True) as model:
        spec = replace(site.spec(agent="aider", prompt=PROMPT, timeout=120),
                       gateway_url=model.base_url, model="gpt-4.1")
        outcome = await aider_world.run_sandbox(site.tmp, spec, env={"PWD": str(site.tmp)})

    assert outcome.returncode == exitcodes.OK, outcome.stderr
    assert {r.path for r in model.requests} == {"/openai/v1/chat/completions"}
    assert {r.body["model"] for r in model.requests} == {"gpt-4.1"}
    assert all(r.body["stream"] is True for r in model.requests)
    assert {r.credential for r in model.requests} == {GATEWAY_TOKEN}
    [result] = site.bot.results
    assert [c["path"] for c in result["changes"]] == ["README.md", "old.txt", "src/new_module.py"]
    assert result["summary"] == FINAL and result["stats"]["agent_turns"] == 2
