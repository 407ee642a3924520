"""The real Codex, at the version sandbox/Dockerfile pins, through `python -m sandbox` against
the scripted Responses API double; run as an unprivileged user, as the image does."""

from __future__ import annotations

import asyncio
import os
import re
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from sandbox import exitcodes
from sandbox.agents import adapter_for
from sandbox.spec import Spec, parse_spec
from tests.clis.codex_scenarios import (
    ADD_MODULE,
    DELETE_OLD,
    FINAL,
    NO_RETRIES,
    PLAN_FINAL,
    PROMPT,
    a_model_error,
    code,
    the_edits,
    the_plan,
)
from tests.clis.support import SCRIPTED_CHANGES, CliWorld, RunnerOutcome
from tests.fakes.model_openai import (
    Failure,
    OpenAIDouble,
    ToolCall,
    Turn,
    openai_failure,
    quota_failure,
)
from tests.flow.harness import until
from tests.sandbox.support import GATEWAY_TOKEN, Site, make_site, make_spec

pytestmark = pytest.mark.slow


@pytest.fixture
async def site(tmp_path: Path, aiohttp_server: Any, codex_world: CliWorld) -> Site:
    site = await make_site(tmp_path, aiohttp_server)
    site.tmp = codex_world.run_dir()
    return site


def spec_for_codex() -> Spec:
    """A parsed spec for the adapter, as the runner would read one."""
    data = make_spec(clone_url="https://github.com/octo/demo.git", agent="codex",
                     callback_url="http://bot/internal/runs/12", base_sha="a" * 40)
    return parse_spec({**data.to_json_dict(), "agent_command": None})


async def run_codex(world: CliWorld, site: Site, script: list[Turn], *, model: str | None = None
                    ) -> tuple[RunnerOutcome, OpenAIDouble]:
    """One sandbox run of Codex with the double as its provider (the gateway's place)."""
    codex_home = site.tmp / "home" / ".codex"
    codex_home.mkdir(parents=True)
    (codex_home / "config.toml").write_text(NO_RETRIES)
    async with OpenAIDouble(script, prefix="/openai") as double:
        spec = replace(site.spec(agent="codex", prompt=PROMPT, timeout=120),
                       gateway_url=double.base_url, model=model)
        outcome = await world.run_sandbox(site.tmp, spec)
    return outcome, double


async def test_the_scripted_edits_become_the_changeset_events_and_stats(
        codex_world: CliWorld, site: Site) -> None:
    outcome, model = await run_codex(codex_world, site, the_edits())

    assert outcome.returncode == exitcodes.OK, outcome.stderr
    [result] = site.bot.results
    assert result["status"] == "succeeded"
    assert result["changes"] == SCRIPTED_CHANGES
    assert result["summary"] == FINAL
    assert result["commit_message"].startswith(FINAL)

    # Each tool Codex ran from the model's exec cells, started then completed.
    workspace = str(site.tmp / "workspace")
    # (Codex runs a command in the bash it finds first on PATH, with -lc.)
    tools = [(t["name"], t["status"], re.sub(r"^\S*/bash -lc", "bash -lc", t.get("input", "")))
             for t in site.bot.kinds("tool")]
    assert [t for t in tools if t[1] == "started"] == [
        ("edit", "started", f"add {workspace}/src/new_module.py"),
        ("shell", "started", "bash -lc 'cat README.md'"),
        ("edit", "started", f"update {workspace}/README.md"),
        ("edit", "started", f"delete {workspace}/old.txt"),
    ]
    assert [t[0] for t in tools if t[1] == "completed"] == ["edit", "shell", "edit", "edit"]
    [shell] = [t for t in site.bot.kinds("tool") if t["name"] == "shell" and t.get("output")]
    assert shell["output"] == "# Demo\n\nHello.\n" and shell["exit_code"] == 0
    assert [m["text"] for m in site.bot.kinds("message")] == [
        "I'll add the module and look at the README.", FINAL]

    # Codex's usage of the turn, in OpenAI's terms (input counts cached input too).
    stats = result["stats"]
    assert stats["agent_turns"] == 1
    assert stats["agent_input_tokens"] == 1200 + 40 + 35 + 30 + 900 + 2100 + 2200 + 2300
    assert stats["agent_cached_input_tokens"] == 2100 + 2200 + 2300
    assert stats["agent_cache_write_input_tokens"] == 900
    assert stats["agent_output_tokens"] == 60 + 30 + 20 + 25
    assert stats["agent_reasoning_output_tokens"] == 0

    # The provider saw the run's gateway credential, the workspace, and one request a turn.
    assert model.turns_played == 4 and model.exhausted == 0
    assert len(model.main_requests) == 4 == len(model.requests)
    assert {r.credential for r in model.requests} == {GATEWAY_TOKEN}
    assert {r.working_directory for r in model.main_requests} == {workspace}
    assert {r.path for r in model.requests} == {"/openai/v1/responses"}
    assert all(r.body["stream"] is True for r in model.requests)
    assert model.unknown == []


async def test_a_named_model_gets_the_tools_directly(codex_world: CliWorld, site: Site) -> None:
    """A model Codex does not run in code mode is offered apply_patch, exec_command and
    update_plan as tools of their own; the same items come out."""
    script = [Turn(tool_calls=[ToolCall("update_plan", {"plan": [
                  {"step": "Add the module", "status": "in_progress"}]}),
                  ToolCall("apply_patch", {"input": ADD_MODULE})]),
              Turn(tool_calls=[ToolCall("exec_command", {"cmd": "ls"}),
                               ToolCall("apply_patch", {"input": DELETE_OLD})]),
              Turn(text=FINAL)]
    outcome, model = await run_codex(codex_world, site, script, model="gpt-5.5")

    assert outcome.returncode == exitcodes.OK, outcome.stderr
    first = model.main_requests[0]
    assert first.body["model"] == "gpt-5.5"
    assert {"apply_patch", "exec_command", "update_plan"} <= set(first.tool_names)
    assert "exec" not in first.tool_names
    [result] = site.bot.results
    assert [c["path"] for c in result["changes"]] == ["old.txt", "src/new_module.py"]
    assert [t["name"] for t in site.bot.kinds("tool") if t["status"] == "completed"] == [
        "edit", "shell", "edit"]
    assert site.bot.kinds("todo")[0]["items"] == [{"text": "Add the module",
                                                   "status": "pending"}]


async def test_the_plan_is_offered_and_reaches_the_events(codex_world: CliWorld,
                                                          site: Site) -> None:
    outcome, model = await run_codex(codex_world, site, the_plan())

    assert outcome.returncode == exitcodes.OK, outcome.stderr
    # Offered (off by default in this version): a tool the model's exec cells may call.
    [cell] = [t for t in model.main_requests[0].body["input"]
              if t.get("type") == "additional_tools"]
    assert "exec" in model.main_requests[0].tool_names
    assert "### `update_plan`" in str(cell)
    todos = [[(i["text"], i["status"]) for i in t["items"]] for t in site.bot.kinds("todo")]
    assert todos == [[("Add the module", "pending"), ("Remove old.txt", "pending")],
                     [("Add the module", "completed"), ("Remove old.txt", "pending")],
                     [("Add the module", "completed"), ("Remove old.txt", "completed")]]
    # The plan is shown as a plan, not as tool calls.
    assert {t["name"] for t in site.bot.kinds("tool")} == {"edit", "shell"}
    [result] = site.bot.results
    assert [c["path"] for c in result["changes"]] == ["old.txt", "src/new_module.py"]
    assert result["summary"] == PLAN_FINAL


@pytest.mark.parametrize(("failure", "says", "status"), [
    (openai_failure(503), "unexpected status 503 Service Unavailable: The engine is currently "
                          "overloaded, please try again later", 503),
    (openai_failure(401), "unexpected status 401 Unauthorized: Incorrect API key provided", 401),
    # Not retried, and said in Codex's own words without the status (the gateway's answer to
    # a run whose budget is spent).
    (quota_failure(), "Quota exceeded. Check your plan and billing details", None),
    (Failure.stream_cut(), "stream disconnected before completion", None),
], ids=["overloaded", "unauthorized", "quota", "stream-cut"])
async def test_a_model_error_ends_the_run_with_the_clis_reason(
        codex_world: CliWorld, site: Site, failure: Failure, says: str,
        status: int | None) -> None:
    outcome, model = await run_codex(codex_world, site, a_model_error(failure))

    assert outcome.returncode == exitcodes.AGENT, outcome.stderr
    assert len(model.requests) == 1  # told not to retry
    [result] = site.bot.results
    assert result["status"] == "failed"
    detail = f" (HTTP {status})" if status else ""
    assert result["summary"].startswith(f"The agent exited with code 1. Codex stopped{detail}: "
                                        f"{says}")
    assert result["summary"].endswith(".") and not result["summary"].endswith("..")
    assert result["stats"].get("agent_api_error_status") == status
    assert result["stats"]["failed_phase"] == "agent"
    [failed] = [p for p in site.bot.kinds("phase") if p["status"] == "failed"]
    assert failed["phase"] == "agent" and says in failed["reason"]
    assert not re.search(r"agw_\w+", outcome.stderr + outcome.stdout + str(site.bot.events))


async def test_an_unreachable_gateway_fails_the_run_instead_of_waiting(
        codex_world: CliWorld, site: Site) -> None:
    """Codex 0.169.0 would wait for the network until the run's time limit; the adapter turns
    that off, so the turn fails after Codex's own retries (none here) with its reason."""
    codex_home = site.tmp / "home" / ".codex"
    codex_home.mkdir(parents=True)
    (codex_home / "config.toml").write_text(NO_RETRIES)
    async with OpenAIDouble() as closed:
        gone = closed.base_url  # a loopback port nothing listens on once the double closes
    spec = replace(site.spec(agent="codex", prompt=PROMPT, timeout=120), gateway_url=gone)
    outcome = await codex_world.run_sandbox(site.tmp, spec)

    assert outcome.returncode == exitcodes.AGENT, outcome.stderr
    [result] = site.bot.results
    assert "Codex stopped: Connection failed: error sending request" in result["summary"]


def processes_running(marker: str) -> list[int]:
    """Pids whose command line has `marker` as an argument."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if entry.name.isdigit() and marker.encode() in cmdline.split(b"\0"):
            found.append(int(entry.name))
    return found


async def test_past_the_time_limit_codex_and_its_commands_are_stopped(
        codex_world: CliWorld, site: Site) -> None:
    """A command Codex left running in its own terminal session (exec_command yields after
    250 ms) goes with Codex when the run's time limit stops it."""
    # Unique seconds find the process (bash execs a lone command, so no comment would show).
    marker = f"6{os.getpid() % 100:02d}.{time.monotonic_ns() % 10**6:06d}"
    held = asyncio.Event()
    script = [Turn(tool_calls=[code(("exec_command", {"cmd": f"sleep {marker}",
                                                      "yield_time_ms": 250}))]),
              Turn(text="never sent", hold=held)]
    async with OpenAIDouble(script, prefix="/openai") as model:
        spec = replace(site.spec(agent="codex", prompt=PROMPT, timeout=4),
                       gateway_url=model.base_url)
        began = time.monotonic()
        run = asyncio.create_task(codex_world.run_sandbox(site.tmp, spec))
        try:
            async def second_answer_asked() -> bool:
                return model.turns_played == 2 or run.done()

            await until(second_answer_asked, 30, what="Codex asking for its second answer")
            # The premise: Codex answered the first cell with the command still running.
            running = processes_running(marker)
            outcome = await run
            took = time.monotonic() - began
            left = processes_running(marker)
        finally:
            held.set()

    assert outcome.returncode == exitcodes.TIMEOUT, outcome.stderr
    assert took < 20
    [result] = site.bot.results
    assert result["summary"] == "The agent ran past the run's time limit of 4s and was stopped."
    assert model.turns_played == 2  # the second answer was being waited for
    assert running and left == []


async def test_the_pinned_cli_offers_no_plan_tool_by_default(codex_world: CliWorld,
                                                             tmp_path: Path) -> None:
    """The premise of the adapter's tools.update_plan.enabled: should a version offer the plan
    tool on its own (or name it otherwise), this says so."""
    async with OpenAIDouble([Turn(text="Done.")], prefix="/openai") as model:
        argv = adapter_for("codex").invocation(
            replace(spec_for_codex(), gateway_url=model.base_url), tmp_path / "prompt").argv
        at = argv.index("tools.update_plan.enabled=true")
        without = argv[:at - 1] + argv[at + 1:]  # the adapter's command line, less the flag
        process = await asyncio.create_subprocess_exec(
            str(codex_world.bin_dir / without[0]), *without[1:], "--skip-git-repo-check",
            cwd=tmp_path, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={"PATH": f"{codex_world.bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path),
                 "OPENAI_API_KEY": "unused"})
        _, err = await asyncio.wait_for(process.communicate(b"Say done."), 60)

    assert process.returncode == 0, err.decode()
    [request] = model.main_requests
    assert "exec" in request.tool_names  # code mode: the tools are described in exec's cell
    assert "update_plan" not in str(request.body)
    assert "apply_patch" in str(request.body)
