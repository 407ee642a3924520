"""Agent adapters: argv per CLI, and each CLI's documented output turned into progress events."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from sandbox import exitcodes
from sandbox.agents import ADAPTERS, CLAUDE_ROOT_REFUSAL, adapter_for
from sandbox.events import Event
from sandbox.parsers.base import StreamParser
from sandbox.spec import parse_spec
from tests.sandbox.support import DATA, Site, make_site, make_spec, run_sandbox

TRANSCRIPTS = DATA / "transcripts"
FAKE_CLI = DATA / "sandbox" / "fake_cli.py"
PROMPT = Path("/tmp/agentbot-run-x/prompt.md")
CLAUDE_ARGV = ("claude", "-p", "--output-format", "stream-json", "--verbose",
               "--dangerously-skip-permissions", "--tools",
               "Agent,Bash,Edit,Glob,Grep,NotebookEdit,Read,Skill,TaskCreate,TaskGet,TaskList,"
               "TaskUpdate,WebFetch,Write")


def replay(agent: str, transcript: str) -> tuple[list[tuple[str, dict[str, Any]]], StreamParser]:
    """Feed a transcript through the agent's parser, line by line, as the runner does."""
    parser = adapter_for(agent).parser()
    events: list[Event] = []
    for line in (TRANSCRIPTS / transcript).read_text().splitlines():
        events.extend(parser.feed("stdout", line))
    events.extend(parser.finish())
    return [(e.kind, e.data) for e in events], parser


def spec_for(agent: str, model: str | None = None, command: list[str] | None = None) -> Any:
    data = make_spec(clone_url="https://github.com/octo/demo.git", agent=agent,
                     callback_url="http://bot:8081/internal/runs/12", base_sha="a" * 40,
                     agent_command=command).to_json_dict()
    data["model"] = model
    if agent != "command":
        data["agent_command"] = None
    return parse_spec(data)


def test_claude_stream_json_becomes_events() -> None:
    events, parser = replay("claude", "claude-stream.jsonl")

    assert events == [
        ("log", {"source": "agent", "stream": "stdout",
                 "text": "Claude Code 2.1.0 session started (model claude-sonnet-4-5)"}),
        ("message", {"text": "Let me look at the failing date parser first."}),
        ("todo", {"items": [{"text": "Reproduce the parsing bug", "status": "in_progress"},
                            {"text": "Fix the month offset", "status": "pending"}]}),
        ("tool", {"name": "Bash", "status": "started", "id": "toolu_bash1",
                  "input": "python -m pytest -q tests/test_dates.py"}),
        ("tool", {"name": "Bash", "status": "failed", "id": "toolu_bash1",
                  "output": "F.\n1 failed, 1 passed in 0.03s"}),
        ("log", {"source": "agent", "stream": "stdout",
                 "text": "not a JSON line: a stray warning from a plugin"}),
        ("tool", {"name": "Edit", "status": "started", "id": "toolu_edit1",
                  "input": "/workspace/dates.py"}),
        ("tool", {"name": "Edit", "status": "completed", "id": "toolu_edit1",
                  "output": "The file /workspace/dates.py has been updated."}),
        ("todo", {"items": [{"text": "Reproduce the parsing bug", "status": "completed"},
                            {"text": "Fix the month offset", "status": "completed"}]}),
        ("message", {"text": "Fixed the month offset in dates.py; both date tests pass now."}),
    ]
    assert parser.summary == "Fixed the month offset in dates.py; both date tests pass now."
    assert parser.error is None
    assert parser.stats == {"cost_usd": 0.0375, "turns": 6, "duration_ms": 18250,
                            "duration_api_ms": 15400, "input_tokens": 4100,
                            "output_tokens": 410, "cache_creation_input_tokens": 0,
                            "cache_read_input_tokens": 12000}


def test_claude_error_result_fails_the_agent() -> None:
    _, parser = replay("claude", "claude-max-turns.jsonl")

    assert parser.error == "Claude Code stopped (error_max_turns): error_max_turns"
    assert parser.summary is None


def test_captured_claude_edits_become_events_and_stats() -> None:
    """Captured from the pinned Claude Code by scripts/capture-transcripts."""
    events, parser = replay("claude", "claude-captured-edits.jsonl")

    assert events[0][1]["text"].startswith("Claude Code 2.")
    assert [(e["name"], e["status"]) for kind, e in events if kind == "tool"] == [
        ("Write", "started"), ("Read", "started"), ("Write", "completed"), ("Read", "completed"),
        ("Edit", "started"), ("Edit", "completed"), ("Bash", "started"), ("Bash", "completed")]
    final = "Added the module, updated the README and removed old.txt."
    assert events[-1] == ("message", {"text": final})
    assert (parser.summary, parser.error) == (final, None)
    stats = parser.stats
    assert (stats["input_tokens"], stats["output_tokens"]) == (1305, 135)
    assert (stats["cache_creation_input_tokens"], stats["cache_read_input_tokens"]) == (900, 6600)
    assert stats["terminal_reason"] == "completed" and stats["turns"] == 5
    assert {"ttft_ms", "duration_ms", "duration_api_ms", "cost_usd"} <= set(stats)
    [(model, usage)] = stats["model_usage"].items()
    assert model.startswith("claude-") and usage["cache_read_input_tokens"] == 6600


def test_captured_claude_task_tools_become_the_plan() -> None:
    events, parser = replay("claude", "claude-captured-plan.jsonl")

    plans = [[(i["text"], i["status"]) for i in e["items"]] for kind, e in events
             if kind == "todo"]
    assert plans[0] == [("Add the module", "pending")]
    assert plans[1] == [("Add the module", "pending"), ("Remove old.txt", "pending")]
    assert [("Add the module", "in_progress"), ("Remove old.txt", "pending")] in plans
    assert plans[-1] == [("Add the module", "completed"), ("Remove old.txt", "completed")]
    assert {e["name"] for kind, e in events if kind == "tool"} == {"Write", "Bash"}
    assert parser.summary == "Both steps are done."


def test_task_tools_keep_ids_subjects_and_deletions() -> None:
    parser = adapter_for("claude").parser()
    lines = [
        {"type": "assistant", "message": {"content": [
            {"type": "tool_use", "id": "c1", "name": "TaskCreate", "input": {"subject": "A"}},
            {"type": "tool_use", "id": "c2", "name": "TaskCreate", "input": {"subject": "B"}}]}},
        # No structured result: the id comes from the text.
        {"type": "user", "message": {"content": [
            {"type": "tool_result", "tool_use_id": "c1",
             "content": "Task #7 created successfully: A"}]}},
        {"type": "user", "message": {"content": [
            {"type": "tool_result", "tool_use_id": "c2", "content": "Task #8 created"}]},
         "tool_use_result": {"task": {"id": "8", "subject": "B"}}},
        {"type": "assistant", "message": {"content": [
            {"type": "tool_use", "id": "u1", "name": "TaskUpdate",
             "input": {"taskId": "7", "subject": "A, renamed", "status": "in_progress"}},
            {"type": "tool_use", "id": "u2", "name": "TaskUpdate",
             "input": {"taskId": "8", "status": "deleted"}},
            {"type": "tool_use", "id": "u3", "name": "TaskUpdate",
             "input": {"taskId": "9", "status": "completed"}}]}},
        {"type": "user", "message": {"content": [
            {"type": "tool_result", "tool_use_id": "u1", "content": "Updated task #7"},
            {"type": "tool_result", "tool_use_id": "u2", "content": "Updated task #8"},
            {"type": "tool_result", "tool_use_id": "u3", "content": "no such task",
             "is_error": True}]}},
    ]
    events = [e for line in lines for e in parser.feed("stdout", json.dumps(line))]

    assert [e.data["items"] for e in events] == [
        [{"text": "A", "status": "pending"}],
        [{"text": "A", "status": "pending"}, {"text": "B", "status": "pending"}],
        [{"text": "A, renamed", "status": "in_progress"}, {"text": "B", "status": "pending"}],
        [{"text": "A, renamed", "status": "in_progress"}],
    ]


@pytest.mark.parametrize(("transcript", "error", "reason"), [
    ("claude-captured-overloaded.jsonl",
     "Claude Code stopped (api_error, HTTP 529): API Error: 529 Overloaded.", "api_error"),
    ("claude-captured-max-turns.jsonl",
     "Claude Code stopped (max_turns): Reached maximum number of turns (2)", "max_turns"),
])
def test_captured_claude_failures_carry_the_clis_reason(transcript: str, error: str,
                                                        reason: str) -> None:
    events, parser = replay("claude", transcript)

    assert parser.error is not None and parser.error.startswith(error)
    assert parser.stats["terminal_reason"] == reason
    assert parser.summary is None
    # The CLI's own error text is a log line, not something the model said.
    assert not [e for kind, e in events if kind == "message" and "API Error" in e["text"]]


CODEX_BASH = "/usr/bin/bash -lc"  # the bash first on the capture's PATH


def test_codex_captured_edits_become_events_and_stats() -> None:
    events, parser = replay("codex", "codex-captured-edits.jsonl")
    cat = f"{CODEX_BASH} 'cat README.md'"

    assert events == [
        ("log", {"source": "agent", "stream": "stdout",
                 "text": "Codex thread 00000000-0000-4000-8000-000000000001"}),
        ("message", {"text": "I'll add the module and look at the README."}),
        ("tool", {"name": "edit", "status": "started", "id": "item_1",
                  "input": "add /workspace/src/new_module.py"}),
        ("tool", {"name": "edit", "status": "completed", "id": "item_1",
                  "input": "add /workspace/src/new_module.py"}),
        ("tool", {"name": "shell", "status": "started", "id": "item_2", "input": cat}),
        ("tool", {"name": "shell", "status": "completed", "id": "item_2", "input": cat,
                  "output": "# Demo\n\nHello.\n", "exit_code": 0}),
        ("tool", {"name": "edit", "status": "started", "id": "item_3",
                  "input": "update /workspace/README.md"}),
        ("tool", {"name": "edit", "status": "completed", "id": "item_3",
                  "input": "update /workspace/README.md"}),
        ("tool", {"name": "edit", "status": "started", "id": "item_4",
                  "input": "delete /workspace/old.txt"}),
        ("tool", {"name": "edit", "status": "completed", "id": "item_4",
                  "input": "delete /workspace/old.txt"}),
        ("message", {"text": "Added the module, updated the README and removed old.txt."}),
    ]
    assert parser.summary == "Added the module, updated the README and removed old.txt."
    assert parser.error is None
    # The scripted usage summed over the turn's four requests, cached input inside input.
    assert parser.stats == {"turns": 1, "input_tokens": 8805, "cached_input_tokens": 6600,
                            "cache_write_input_tokens": 900, "output_tokens": 135,
                            "reasoning_output_tokens": 0}


def test_codex_captured_plan_becomes_todo_events_once_per_change() -> None:
    events, parser = replay("codex", "codex-captured-plan.jsonl")

    todos = [[(i["text"], i["status"]) for i in data["items"]]
             for kind, data in events if kind == "todo"]
    # Started, updated twice; the item's completion repeats the last update and is dropped.
    assert todos == [[("Add the module", "pending"), ("Remove old.txt", "pending")],
                     [("Add the module", "completed"), ("Remove old.txt", "pending")],
                     [("Add the module", "completed"), ("Remove old.txt", "completed")]]
    assert [(data["name"], data["status"]) for kind, data in events if kind == "tool"] == [
        ("edit", "started"), ("edit", "completed"), ("shell", "started"),
        ("shell", "completed")]
    assert parser.summary == "Both steps are done." and parser.error is None


@pytest.mark.parametrize(("transcript", "error", "status"), [
    ("codex-captured-overloaded.jsonl",
     "Codex stopped (HTTP 503): unexpected status 503 Service Unavailable: The engine is "
     "currently overloaded, please try again later, url: "
     "http://gateway.agentbot.test/openai/v1/responses, request id: req_double000001", 503),
    ("codex-captured-unauthorized.jsonl",
     "Codex stopped (HTTP 401): unexpected status 401 Unauthorized: Incorrect API key "
     "provided.", 401),
    # Codex's own words for OpenAI's 429 insufficient_quota, without its full stop.
    ("codex-captured-quota.jsonl",
     "Codex stopped: Quota exceeded. Check your plan and billing details", None),
    ("codex-captured-stream-cut.jsonl",
     "Codex stopped: stream disconnected before completion: Transport error: network error: "
     "error decoding response body", None),
])
def test_codex_captured_failed_turn_fails_the_agent_with_its_reason(
        transcript: str, error: str, status: int | None) -> None:
    events, parser = replay("codex", transcript)

    assert parser.error is not None and parser.error.startswith(error)
    assert parser.stats.get("api_error_status") == status
    assert parser.stats["turns"] == 1
    assert parser.summary is None
    # Codex's error event is a log line, not something the model said.
    [log] = [e for kind, e in events if kind == "log" and e["stream"] == "stderr"]
    assert log["text"].removesuffix(".") == "Codex: " + parser.error.partition(": ")[2]
    assert not [kind for kind, _ in events if kind == "message"]


def test_codex_retries_are_log_lines_and_a_recovered_turn_succeeds() -> None:
    """Codex says "Reconnecting... n/5" as it retries; a turn that then completes is no
    failure. (Lines as 0.169.0 prints them, retries left on.)"""
    parser = adapter_for("codex").parser()
    retry = ("Reconnecting... 1/5 (unexpected status 503 Service Unavailable: The engine is "
             "currently overloaded, please try again later)")
    lines = ['{"type":"turn.started"}', json.dumps({"type": "error", "message": retry}),
             '{"type":"item.completed","item":{"id":"item_0","type":"agent_message",'
             '"text":"Done."}}',
             '{"type":"turn.completed","usage":{"input_tokens":5,"output_tokens":1}}']
    events = [(e.kind, e.data) for line in lines for e in parser.feed("stdout", line)]
    events += [(e.kind, e.data) for e in parser.finish()]

    assert events == [("log", {"source": "agent", "stream": "stderr", "text": f"Codex: {retry}"}),
                      ("message", {"text": "Done."})]
    assert parser.error is None and parser.summary == "Done."


def test_codex_error_before_any_turn_fails_the_agent() -> None:
    parser = adapter_for("codex").parser()
    parser.feed("stdout", '{"type":"error","message":"model_providers.agentbot: bad"}')
    parser.finish()

    assert parser.error == "Codex stopped: model_providers.agentbot: bad"


def test_codex_mcp_and_web_search_items_become_tools() -> None:
    """Item shapes the scripted scenarios do not reach (no MCP server, no hosted search)."""
    parser = adapter_for("codex").parser()
    items = [
        {"type": "item.started", "item": {"id": "item_5", "type": "mcp_tool_call",
                                          "server": "docs", "tool": "search",
                                          "arguments": {"query": "pathlib"}, "result": None,
                                          "error": None, "status": "in_progress"}},
        {"type": "item.completed", "item": {"id": "item_5", "type": "mcp_tool_call",
                                            "server": "docs", "tool": "search",
                                            "arguments": {"query": "pathlib"}, "result": None,
                                            "error": {"message": "server unavailable"},
                                            "status": "failed"}},
        {"type": "item.completed", "item": {"id": "item_6", "type": "web_search",
                                            "query": "python missing_ok"}},
        {"type": "item.completed", "item": {"id": "item_7", "type": "error",
                                            "message": "Falling back to HTTPS transport."}},
    ]
    events = [(e.kind, e.data) for obj in items for e in parser.feed("stdout", json.dumps(obj))]

    assert events == [
        ("tool", {"name": "docs.search", "status": "started", "id": "item_5",
                  "input": "pathlib"}),
        ("tool", {"name": "docs.search", "status": "failed", "id": "item_5",
                  "input": "pathlib", "output": "server unavailable"}),
        ("tool", {"name": "web_search", "status": "completed", "id": "item_6",
                  "input": "python missing_ok"}),
        ("log", {"source": "agent", "stream": "stderr",
                 "text": "Codex: Falling back to HTTPS transport."}),
    ]
    assert parser.error is None


def test_command_output_may_carry_its_own_events() -> None:
    parser = adapter_for("command").parser()
    lines = ['{"kind": "todo", "data": {"items": [{"text": "a", "status": "pending"}]}}',
             '{"kind": "phase", "data": {"phase": "agent", "status": "succeeded"}}',
             "plain text", '{"kind": "message", "data": {"text": "All done."}}']
    events = [(e.kind, e.data) for line in lines for e in parser.feed("stdout", line)]

    assert events == [
        ("todo", {"items": [{"text": "a", "status": "pending"}]}),
        # A phase is the runner's to report: the agent's claim is shown as a log line.
        ("log", {"source": "agent", "stream": "stdout", "text": lines[1]}),
        ("log", {"source": "agent", "stream": "stdout", "text": "plain text"}),
        ("message", {"text": "All done."}),
    ]
    assert parser.summary == "All done."


@pytest.mark.parametrize(("agent", "model", "argv", "stdin"), [
    ("claude", None, [*CLAUDE_ARGV], True),
    ("claude", "opus", [*CLAUDE_ARGV, "--model", "opus"], True),
    ("codex", "gpt-5", ["codex", "exec", "--json", "--dangerously-bypass-approvals-and-sandbox",
                        "--disable", "unbounded_connection_retries",
                        "-c", "analytics.enabled=false", "-c", "tools.update_plan.enabled=true",
                        "--model", "gpt-5", "-"], True),
    ("opencode", "anthropic/claude-sonnet-4-5",
     ["opencode", "run", "--format", "json", "--auto", "--model", "anthropic/claude-sonnet-4-5"],
     True),
    ("aider", None, ["aider", "--no-fancy-input", "--no-auto-commits", "--no-pretty",
                     "--no-gitignore", "--no-check-update", "--no-show-release-notes",
                     "--analytics-disable", "--message-file", str(PROMPT)], False),
])
def test_each_cli_gets_the_prompt_as_a_file_or_stdin(agent: str, model: str | None,
                                                     argv: list[str], stdin: bool) -> None:
    invocation = adapter_for(agent).invocation(spec_for(agent, model), PROMPT)

    assert invocation.argv == argv
    assert invocation.stdin_path == (PROMPT if stdin else None)


def test_the_command_agent_substitutes_the_prompt_file_without_a_shell() -> None:
    command = ["my-agent", "--task={prompt_file}", "$(rm -rf /)", "{prompt_file}"]
    invocation = adapter_for("command").invocation(spec_for("command", command=command), PROMPT)

    assert invocation.argv == ["my-agent", f"--task={PROMPT}", "$(rm -rf /)", str(PROMPT)]
    assert invocation.stdin_path == PROMPT
    assert set(ADAPTERS) == {"claude", "codex", "opencode", "aider", "command"}


@pytest.fixture
async def site(tmp_path: Path, aiohttp_server: Any) -> Site:
    return await make_site(tmp_path, aiohttp_server)


def install_fake_cli(bin_dir: Path, name: str) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / name
    script.write_text(f'#!/bin/sh\nFAKE_CLI_NAME={name} exec "{sys.executable}" '
                      f'"{FAKE_CLI}" "$@"\n')
    script.chmod(0o755)


@pytest.mark.parametrize(("agent", "summary"), [
    ("claude", "Fixed the month offset in dates.py; both date tests pass now."),
    ("codex", "Added the module, updated the README and removed old.txt."),
    ("opencode", "Added the module, updated the README and removed old.txt."),
    ("aider", "I added the module, updated the README greeting and removed old.txt."),
])
async def test_each_adapter_runs_its_cli_through_the_runner(site: Site, agent: str,
                                                            summary: str) -> None:
    install_fake_cli(site.tmp / "bin", agent)
    spec = site.spec(agent=agent, prompt="Fix the bug, please.")
    path = f"{site.tmp / 'bin'}:{Path(sys.executable).parent}:/usr/bin:/bin"
    # IS_SANDBOX: the fake stands in for the real claude, which would refuse root without it.
    outcome = await run_sandbox(site.tmp, spec, env={"PATH": path, "IS_SANDBOX": "1"})

    assert outcome.returncode == 0, outcome.stderr
    assert outcome.report is not None and outcome.report["prompt"] == "Fix the bug, please."
    # As a shell that changed into it would say (OpenCode takes its directory from $PWD).
    assert outcome.report["env"]["PWD"] == str(site.tmp / "workspace")
    [result] = site.bot.results
    assert result["summary"] == summary
    # Only the agent's edit: aider's history file is kept out by .git/info/exclude.
    assert [change["path"] for change in result["changes"]] == ["CHANGELOG.md"]
    assert site.bot.kinds("message")[-1] == {"text": summary}


@pytest.mark.parametrize(("uid", "env", "refused"), [
    (0, {}, True),
    (0, {"IS_SANDBOX": "0"}, True),
    (0, {"IS_SANDBOX": "1"}, False),  # the CLI's own escape hatch, for a confined root
    (0, {"CLAUDE_CODE_BUBBLEWRAP": "1"}, False),
    (10001, {}, False),
])
def test_claude_is_refused_as_root_as_the_cli_itself_would(uid: int, env: dict[str, str],
                                                            refused: bool) -> None:
    reason = adapter_for("claude").refusal(uid, env)
    assert reason == (CLAUDE_ROOT_REFUSAL if refused else None)
    assert all(adapter_for(name).refusal(0, {}) is None for name in ADAPTERS if name != "claude")


@pytest.mark.skipif(os.geteuid() != 0, reason="the refusal is about running as root")
async def test_a_claude_run_as_root_fails_saying_so_before_the_cli_starts(site: Site) -> None:
    install_fake_cli(site.tmp / "bin", "claude")
    path = f"{site.tmp / 'bin'}:{Path(sys.executable).parent}:/usr/bin:/bin"
    outcome = await run_sandbox(site.tmp, site.spec(agent="claude"), env={"PATH": path})

    assert outcome.returncode == exitcodes.AGENT
    assert outcome.report is None  # the CLI never started
    [result] = site.bot.results
    assert (result["status"], result["summary"]) == ("failed", CLAUDE_ROOT_REFUSAL)
    assert result["stats"]["failed_phase"] == "agent"
    [failed] = [p for p in site.bot.kinds("phase") if p["status"] == "failed"]
    assert failed == {"phase": "agent", "status": "failed", "reason": CLAUDE_ROOT_REFUSAL}
    assert CLAUDE_ROOT_REFUSAL in (outcome.termination or "")


def test_claude_gets_the_task_tools_by_name() -> None:
    adapter = adapter_for("claude")
    argv = adapter.invocation(spec_for("claude"), PROMPT).argv
    tools = argv[argv.index("--tools") + 1].split(",")
    assert {"TaskCreate", "TaskUpdate", "Bash", "Edit", "Read", "Write"} <= set(tools)
    assert adapter.environment(spec_for("claude")) == {"CLAUDE_CODE_ENABLE_TODO_TOOLS": "1"}
