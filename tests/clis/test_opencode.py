"""The real OpenCode, at the version sandbox/Dockerfile pins, through `python -m sandbox`
against the scripted Messages API double (an Anthropic model, its default with the run's
keys); run as an unprivileged user, as the image does."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from sandbox import exitcodes
from tests.clis.opencode_scenarios import (
    FINAL,
    PLAN_FINAL,
    PROMPT,
    RETRIES,
    a_model_error,
    overloaded,
    the_edits,
    the_plan,
    write,
)
from tests.clis.support import SCRIPTED_CHANGES, CliWorld, RunnerOutcome
from tests.fakes.model_anthropic import AnthropicDouble, Failure, ToolCall, Turn
from tests.fakes.model_openai import OpenAIDouble
from tests.sandbox.support import GATEWAY_TOKEN, Site, make_site

pytestmark = pytest.mark.slow


@pytest.fixture
async def site(tmp_path: Path, aiohttp_server: Any, opencode_world: CliWorld) -> Site:
    site = await make_site(tmp_path, aiohttp_server)
    site.tmp = opencode_world.run_dir()
    return site


async def run_opencode(world: CliWorld, site: Site, script: list[Turn], *,
                       model: str | None = None) -> tuple[RunnerOutcome, AnthropicDouble]:
    """One sandbox run of OpenCode with the double where the gateway would be."""
    async with AnthropicDouble(script, prefix="/anthropic") as double:
        spec = replace(site.spec(agent="opencode", prompt=PROMPT, timeout=120),
                       gateway_url=double.base_url, model=model)
        # PWD as a shell that started the runner leaves it (OpenCode prefers it to its cwd).
        outcome = await world.run_sandbox(site.tmp, spec, env={"PWD": str(site.tmp)})
    return outcome, double


async def test_the_scripted_edits_become_the_changeset_events_and_stats(
        opencode_world: CliWorld, site: Site) -> None:
    outcome, model = await run_opencode(opencode_world, site, the_edits())

    assert outcome.returncode == exitcodes.OK, outcome.stderr
    [result] = site.bot.results
    assert result["status"] == "succeeded"
    assert result["changes"] == SCRIPTED_CHANGES
    assert result["summary"] == FINAL
    assert result["commit_message"].startswith(FINAL)

    # OpenCode prints a tool once it has finished.
    workspace = str(site.tmp / "workspace")
    tools = [(t["name"], t["status"], t.get("input")) for t in site.bot.kinds("tool")]
    assert tools == [("write", "completed", f"{workspace}/src/new_module.py"),
                     ("read", "completed", f"{workspace}/README.md"),
                     ("edit", "completed", f"{workspace}/README.md"),
                     ("bash", "completed", "rm old.txt")]
    [read] = [t for t in site.bot.kinds("tool") if t["name"] == "read"]
    assert "Hello." in read["output"]
    assert [m["text"] for m in site.bot.kinds("message")] == [
        "I'll add the module and look at the README.", FINAL]

    # OpenCode's tokens per step, added up: input without the cache, its reads and writes.
    stats = result["stats"]
    assert stats["agent_turns"] == 4
    assert stats["agent_input_tokens"] == 1200 + 40 + 35 + 30
    assert stats["agent_cached_input_tokens"] == 2100 + 2200 + 2300
    assert stats["agent_cache_write_input_tokens"] == 900
    assert stats["agent_output_tokens"] == 60 + 30 + 20 + 25
    assert stats["agent_cost_usd"] > 0
    assert stats["agent_stop_reason"] == "stop"

    # The provider saw the run's gateway credential, the workspace, one request a step.
    assert model.turns_played == 4 and model.exhausted == 0
    assert len(model.main_requests) == 4
    assert {r.credential for r in model.requests} == {GATEWAY_TOKEN}
    assert {r.working_directory for r in model.main_requests} == {workspace}
    assert {r.path for r in model.requests} == {"/anthropic/v1/messages"}
    assert model.unknown == []


async def test_the_plan_is_offered_and_reaches_the_events(opencode_world: CliWorld,
                                                          site: Site) -> None:
    outcome, model = await run_opencode(opencode_world, site, the_plan())

    assert outcome.returncode == exitcodes.OK, outcome.stderr
    assert "todowrite" in model.main_requests[0].tool_names  # offered headless by default
    todos = [[(i["text"], i["status"]) for i in t["items"]] for t in site.bot.kinds("todo")]
    assert todos == [[("Add the module", "in_progress"), ("Remove old.txt", "pending")],
                     [("Add the module", "completed"), ("Remove old.txt", "in_progress")],
                     [("Add the module", "completed"), ("Remove old.txt", "completed")]]
    # The plan is shown as a plan, not as tool calls.
    assert {t["name"] for t in site.bot.kinds("tool")} == {"write", "bash"}
    [result] = site.bot.results
    assert [c["path"] for c in result["changes"]] == ["old.txt", "src/new_module.py"]
    assert result["summary"] == PLAN_FINAL


@pytest.mark.parametrize(("failure", "tries", "says", "status"), [
    (overloaded(), 1 + RETRIES, "Overloaded", 529),
    (Failure.unauthorized(), 1, "invalid x-api-key", 401),
], ids=["overloaded", "unauthorized"])
async def test_a_model_error_ends_the_run_with_the_clis_reason(
        opencode_world: CliWorld, site: Site, failure: Failure, tries: int, says: str,
        status: int) -> None:
    outcome, model = await run_opencode(opencode_world, site, a_model_error(failure))

    assert outcome.returncode == exitcodes.AGENT, outcome.stderr
    assert len(model.main_requests) == tries  # an overloaded provider is retried, 401 not
    [result] = site.bot.results
    assert result["status"] == "failed"
    assert result["summary"] == (f"The agent exited with code 1. OpenCode stopped "
                                 f"(HTTP {status}): {says}.")
    assert result["stats"]["agent_api_error_status"] == status
    assert result["stats"]["failed_phase"] == "agent"
    [failed] = [p for p in site.bot.kinds("phase") if p["status"] == "failed"]
    assert failed["phase"] == "agent" and says in failed["reason"]
    assert not re.search(r"agw_\w+", outcome.stderr + outcome.stdout + str(site.bot.events))


async def test_a_cut_stream_is_tried_again_and_the_run_goes_on(opencode_world: CliWorld,
                                                              site: Site) -> None:
    """OpenCode retries a stream cut mid-message (2 s later; no header shortens that): one
    cut costs a request, not the run."""
    script = [Turn(text="This answer is cut half-way through.", failure=Failure.stream_cut()),
              Turn(tool_calls=[write("src/new_module.py", "VALUE = 42\n")]),
              Turn(text=FINAL)]
    outcome, model = await run_opencode(opencode_world, site, script)

    assert outcome.returncode == exitcodes.OK, outcome.stderr
    assert len(model.main_requests) == 3 and model.exhausted == 0
    [result] = site.bot.results
    assert result["status"] == "succeeded" and result["summary"] == FINAL
    assert [c["path"] for c in result["changes"]] == ["src/new_module.py"]
    # The cut answer's half never became a message.
    assert [m["text"] for m in site.bot.kinds("message")] == [FINAL]


async def test_a_bare_model_name_goes_to_its_provider(opencode_world: CliWorld,
                                                      site: Site) -> None:
    """OpenCode wants provider/model; the adapter puts a GPT model with OpenAI, whose
    Responses API OpenCode reaches at the gateway's /openai/v1."""
    script = [Turn(text="Writing it.", tool_calls=[ToolCall("apply_patch", {
                  "patchText": "*** Begin Patch\n*** Add File: src/new_module.py\n+VALUE = 42\n"
                               "*** End Patch"})]),
              Turn(text=FINAL)]
    async with OpenAIDouble(script, prefix="/openai") as model:
        spec = replace(site.spec(agent="opencode", prompt=PROMPT, timeout=120),
                       gateway_url=model.base_url, model="gpt-5")
        outcome = await opencode_world.run_sandbox(site.tmp, spec)

    assert outcome.returncode == exitcodes.OK, outcome.stderr
    assert {r.path for r in model.requests} == {"/openai/v1/responses"}
    assert {r.body["model"] for r in model.main_requests} == {"gpt-5"}
    assert "todowrite" in model.main_requests[0].tool_names
    [result] = site.bot.results
    assert [c["path"] for c in result["changes"]] == ["src/new_module.py"]
    assert json.dumps(result["stats"])  # stats came through
    assert result["stats"]["agent_turns"] == 2


async def test_a_tool_call_outside_the_workspace_is_not_refused(opencode_world: CliWorld,
                                                                site: Site) -> None:
    """Without --auto, OpenCode run headless rejects what it would ask about (a file outside
    the workspace: "The user rejected permission to use this specific tool call.")."""
    script = [Turn(tool_calls=[ToolCall("read", {"filePath": "/etc/passwd"}),
                               write("notes.md", "read it\n")]),
              Turn(text=FINAL)]
    outcome, _ = await run_opencode(opencode_world, site, script)

    assert outcome.returncode == exitcodes.OK, outcome.stderr
    [read] = [t for t in site.bot.kinds("tool") if t["name"] == "read"]
    assert read["status"] == "completed" and "root:" in read["output"]


async def test_past_its_step_limit_opencode_asks_for_a_summary_and_ends(
        opencode_world: CliWorld, site: Site) -> None:
    """OpenCode's turn limit (an agent's `steps`, here in the operator's own config, which the
    adapter's settings merge over) is no error: the last step tells the model the maximum is
    reached and to answer in text, and that answer ends the run."""
    config = site.tmp / "home" / ".config" / "opencode" / "opencode.json"
    config.parent.mkdir(parents=True)
    config.write_text(json.dumps({"agent": {"build": {"steps": 2}}}))
    said = "The maximum number of steps is reached; notes.md is written, the rest is not done."
    script = [Turn(tool_calls=[write("notes.md", "first step\n")]), Turn(text=said)]
    outcome, model = await run_opencode(opencode_world, site, script)

    assert outcome.returncode == exitcodes.OK, outcome.stderr
    assert "maximum steps for this agent have been reached" not in model.main_requests[0].text
    assert "maximum steps for this agent have been reached" in model.main_requests[1].text
    [result] = site.bot.results
    assert result["summary"] == said
    assert [c["path"] for c in result["changes"]] == ["notes.md"]
    assert result["stats"]["agent_turns"] == 2
