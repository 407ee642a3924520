"""The real Claude Code, at the version sandbox/Dockerfile pins, through `python -m sandbox`
against the scripted Messages API double; run as an unprivileged user, as the image does."""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from sandbox import exitcodes
from sandbox.agents import CLAUDE_ROOT_REFUSAL
from tests.clis.scenarios import (
    FINAL,
    PROMPT,
    a_model_error,
    past_the_turn_limit,
    the_edits,
    the_plan,
)
from tests.clis.support import SCRIPTED_CHANGES, Account, CliWorld, RunnerOutcome
from tests.fakes.model_anthropic import AnthropicDouble, Failure, Turn
from tests.sandbox.support import GATEWAY_TOKEN, Site, b64, make_site

pytestmark = pytest.mark.slow

@pytest.fixture
async def site(tmp_path: Path, aiohttp_server: Any, claude_world: CliWorld) -> Site:
    site = await make_site(tmp_path, aiohttp_server)
    site.tmp = claude_world.run_dir()
    return site


async def run_claude(world: CliWorld, site: Site, script: list[Turn], *,
                     env: dict[str, str] | None = None) -> tuple[RunnerOutcome, AnthropicDouble]:
    """One sandbox run of Claude Code with the double as its provider (the gateway's place)."""
    async with AnthropicDouble(script, prefix="/anthropic") as model:
        spec = replace(site.spec(agent="claude", prompt=PROMPT, timeout=120),
                       gateway_url=model.base_url)
        # No retries with backoff: an error the script plays ends the run at once.
        outcome = await world.run_sandbox(
            site.tmp, spec, env={"CLAUDE_CODE_MAX_RETRIES": "0", **(env or {})})
    return outcome, model


async def test_the_scripted_edits_become_the_changeset_events_and_stats(
        claude_world: CliWorld, site: Site) -> None:
    outcome, model = await run_claude(claude_world, site, the_edits())

    assert outcome.returncode == exitcodes.OK, outcome.stderr
    [result] = site.bot.results
    assert result["status"] == "succeeded"
    assert result["changes"] == SCRIPTED_CHANGES
    assert result["summary"] == FINAL
    assert result["commit_message"].startswith(FINAL)

    # Claude Code's own tools, each started then completed, with what they were about.
    workspace = str(site.tmp / "workspace")
    tools = [(t["name"], t["status"], t.get("input")) for t in site.bot.kinds("tool")]
    started = [t for t in tools if t[1] == "started"]
    assert started == [("Write", "started", f"{workspace}/src/new_module.py"),
                       ("Read", "started", f"{workspace}/README.md"),
                       ("Edit", "started", f"{workspace}/README.md"),
                       ("Bash", "started", "rm old.txt")]
    assert sorted(t[0] for t in tools if t[1] == "completed") == ["Bash", "Edit", "Read", "Write"]
    assert [m["text"] for m in site.bot.kinds("message")] == [
        "I'll add the module and look at the README.", FINAL]

    stats = result["stats"]
    # The CLI's own count: one a tool call plus the last answer, not one a request.
    assert stats["agent_turns"] == 5
    assert stats["agent_input_tokens"] == 1200 + 40 + 35 + 30
    assert stats["agent_output_tokens"] == 60 + 30 + 20 + 25
    assert stats["agent_cache_creation_input_tokens"] == 900
    assert stats["agent_cache_read_input_tokens"] == 2100 + 2200 + 2300
    assert stats["agent_terminal_reason"] == "completed"
    assert stats["agent_ttft_ms"] >= 0 and stats["agent_cost_usd"] > 0
    [(model_name, per_model)] = stats["agent_model_usage"].items()
    assert model_name == model.main_requests[0].body["model"]
    assert per_model["input_tokens"] == stats["agent_input_tokens"]
    assert per_model["cache_read_input_tokens"] == 6600

    # The provider saw the run's gateway credential, the workspace, and one request a turn;
    # at start-up only its connectivity probe besides.
    assert model.turns_played == 4 and model.exhausted == 0
    assert len(model.main_requests) == 4
    assert all(r.headers.get("x-api-key") == GATEWAY_TOKEN for r in model.main_requests)
    assert {r.working_directory for r in model.main_requests} == {workspace}
    assert model.unknown == []
    assert {r.path for r in model.requests} <= {"/anthropic/v1/messages",
                                                 "/anthropic/api/hello"}


async def test_the_plan_is_offered_and_reaches_the_events(claude_world: CliWorld,
                                                          site: Site) -> None:
    outcome, model = await run_claude(claude_world, site, the_plan())

    assert outcome.returncode == exitcodes.OK, outcome.stderr
    # Offered directly, not behind ToolSearch (and not the TodoWrite of older versions).
    offered = set(model.main_requests[0].tool_names)
    assert {"TaskCreate", "TaskUpdate", "Write", "Edit", "Read", "Bash"} <= offered
    assert "ToolSearch" not in offered
    todos = [[(i["text"], i["status"]) for i in t["items"]] for t in site.bot.kinds("todo")]
    assert todos[0] == [("Add the module", "pending")]
    assert todos[1] == [("Add the module", "pending"), ("Remove old.txt", "pending")]
    assert [("Add the module", "in_progress"), ("Remove old.txt", "pending")] in todos
    assert todos[-1] == [("Add the module", "completed"), ("Remove old.txt", "completed")]
    assert len(todos) == 6
    # The plan is shown as a plan, not as tool calls.
    assert {t["name"] for t in site.bot.kinds("tool")} == {"Write", "Bash"}
    [result] = site.bot.results
    assert [c["path"] for c in result["changes"]] == ["old.txt", "src/new_module.py"]


@pytest.mark.parametrize(("failure", "says", "status"), [
    (Failure.overloaded(), "API Error: 529 Overloaded", 529),
    (Failure.unauthorized(), "Invalid API key", 401),
    (Failure.stream_cut(), "Connection dropped", None),
], ids=["overloaded", "unauthorized", "stream-cut"])
async def test_a_model_error_ends_the_run_with_the_clis_reason(
        claude_world: CliWorld, site: Site, failure: Failure, says: str,
        status: int | None) -> None:
    outcome, model = await run_claude(claude_world, site, a_model_error(failure))

    assert outcome.returncode == exitcodes.AGENT, outcome.stderr
    [result] = site.bot.results
    assert result["status"] == "failed"
    detail = "api_error" + (f", HTTP {status}" if status else "")
    assert f"Claude Code stopped ({detail}): " in result["summary"]
    assert says in result["summary"]
    assert result["stats"]["agent_terminal_reason"] == "api_error"
    assert result["stats"].get("agent_api_error_status") == status
    assert result["stats"]["failed_phase"] == "agent"
    [failed] = [p for p in site.bot.kinds("phase") if p["status"] == "failed"]
    assert failed["phase"] == "agent" and says in failed["reason"]
    assert GATEWAY_TOKEN not in outcome.stderr + outcome.stdout + str(site.bot.events)


async def test_a_turn_limit_ends_the_run_and_keeps_the_work_so_far(claude_world: CliWorld,
                                                                    site: Site) -> None:
    outcome, model = await run_claude(claude_world, site, past_the_turn_limit(),
                                      env={"CLAUDE_CODE_MAX_TURNS": "2"})

    assert outcome.returncode == exitcodes.AGENT, outcome.stderr
    assert model.turns_played == 2
    [result] = site.bot.results
    assert result["status"] == "failed"
    assert ("Claude Code stopped (max_turns): Reached maximum number of turns (2)"
            in result["summary"])
    assert result["stats"]["agent_terminal_reason"] == "max_turns"
    assert result["stats"]["partial"] is True
    assert result["changes"] == [{"path": "notes.md", "mode": "100644",
                                  "content_b64": b64(b"first step\n")}]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the refusal is about root")
async def test_as_root_the_run_fails_saying_so_before_the_cli_starts(claude_world: CliWorld,
                                                                      site: Site) -> None:
    me = Account(0, 0, "root")
    as_root = replace(claude_world, account=me)
    outcome, model = await run_claude(as_root, site, [Turn(text="unused")])

    assert outcome.returncode == exitcodes.AGENT
    [result] = site.bot.results
    assert result["status"] == "failed"
    assert result["summary"] == CLAUDE_ROOT_REFUSAL
    assert model.requests == []


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the refusal is about root")
async def test_the_pinned_cli_itself_refuses_root(claude_world: CliWorld,
                                                  tmp_path: Path) -> None:
    """The premise of the check above: should a version stop refusing, this says so."""
    process = await asyncio.create_subprocess_exec(
        str(claude_world.bin_dir / "claude"), "-p", "--dangerously-skip-permissions", "hi",
        cwd=tmp_path, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "ANTHROPIC_API_KEY": "unused",
             "ANTHROPIC_BASE_URL": "http://127.0.0.1:9"})
    _, err = await asyncio.wait_for(process.communicate(), 60)

    assert process.returncode == 1
    assert "cannot be used with root" in err.decode()
