"""OpenCode's `run --format json` output, as the pinned CLI printed it (captured by
scripts/capture-transcripts from tests/clis/opencode_scenarios.py), and the adapter's choices."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

from sandbox.agents import adapter_for, opencode_config, opencode_model
from tests.sandbox.test_agents import replay, spec_for

WORKSPACE = "/workspace"
FINAL = "Added the module, updated the README and removed old.txt."


def test_the_captured_edits_become_events_summary_and_stats() -> None:
    events, parser = replay("opencode", "opencode-captured-edits.jsonl")

    assert [(kind, data.get("name"), data.get("status"), data.get("input"))
            for kind, data in events if kind == "tool"] == [
        ("tool", "write", "completed", f"{WORKSPACE}/src/new_module.py"),
        ("tool", "read", "completed", f"{WORKSPACE}/README.md"),
        ("tool", "edit", "completed", f"{WORKSPACE}/README.md"),
        ("tool", "bash", "completed", "rm old.txt"),
    ]
    assert [data["text"] for kind, data in events if kind == "message"] == [
        "I'll add the module and look at the README.", FINAL]
    assert {kind for kind, _ in events} == {"tool", "message"}  # step lines are stats only
    assert parser.summary == FINAL and parser.error is None
    assert parser.stats == {
        "turns": 4, "input_tokens": 1200 + 40 + 35 + 30, "output_tokens": 60 + 30 + 20 + 25,
        "reasoning_output_tokens": 0, "cached_input_tokens": 2100 + 2200 + 2300,
        "cache_write_input_tokens": 900, "cost_usd": pytest.approx(0.010995, rel=0.2),
        "stop_reason": "stop"}


def test_the_captured_plan_becomes_todos_not_tools() -> None:
    events, parser = replay("opencode", "opencode-captured-plan.jsonl")

    todos = [[(i["text"], i["status"]) for i in data["items"]]
             for kind, data in events if kind == "todo"]
    assert todos == [[("Add the module", "in_progress"), ("Remove old.txt", "pending")],
                     [("Add the module", "completed"), ("Remove old.txt", "in_progress")],
                     [("Add the module", "completed"), ("Remove old.txt", "completed")]]
    assert {data["name"] for kind, data in events if kind == "tool"} == {"write", "bash"}
    assert parser.summary == "Both steps are done."


@pytest.mark.parametrize(("transcript", "error", "status"), [
    ("opencode-captured-overloaded.jsonl", "OpenCode stopped (HTTP 529): Overloaded", 529),
    ("opencode-captured-unauthorized.jsonl", "OpenCode stopped (HTTP 401): invalid x-api-key",
     401),
])
def test_a_captured_model_error_fails_the_agent_in_opencodes_words(
        transcript: str, error: str, status: int) -> None:
    events, parser = replay("opencode", transcript)

    assert events == []
    assert parser.error == error
    assert parser.stats == {"api_error_status": status}


def feed(*objects: dict[str, Any]) -> Any:
    parser = adapter_for("opencode").parser()
    events = [e for obj in objects for e in parser.feed("stdout", json.dumps(obj))]
    return [(e.kind, e.data) for e in events], parser


def test_an_error_without_a_status_says_what_opencode_said() -> None:
    _, parser = feed({"type": "error", "error": {
        "name": "UnknownError", "data": {"message": "Unexpected server error."}}})
    assert parser.error == "OpenCode stopped: Unexpected server error"
    assert "api_error_status" not in parser.stats


def test_a_call_of_a_tool_opencode_does_not_offer_is_a_failed_call_of_that_tool() -> None:
    """OpenCode answers it with its `invalid` tool (seen with a GPT model calling `write`)."""
    said = "Model tried to call unavailable tool 'write'. Available tools: apply_patch, bash."
    events, _ = feed({"type": "tool_use", "part": {
        "type": "tool", "tool": "invalid", "callID": "call_1",
        "state": {"status": "completed", "input": {"tool": "write", "error": said},
                  "output": f"The arguments provided to the tool are invalid: {said}"}}})
    assert [(d["name"], d["status"], d["id"]) for _, d in events] == [
        ("write", "failed", "call_1")]
    assert said in events[0][1]["output"]


def test_a_failed_tool_carries_its_error() -> None:
    events, _ = feed({"type": "tool_use", "part": {
        "tool": "edit", "callID": "c", "state": {
            "status": "error", "input": {"filePath": "/w/a.py"},
            "error": "oldString not found in content"}}})
    assert events == [("tool", {"name": "edit", "status": "failed", "id": "c",
                                "input": "/w/a.py",
                                "output": "oldString not found in content"})]


@pytest.mark.parametrize(("model", "given"), [
    ("anthropic/claude-sonnet-4-5", "anthropic/claude-sonnet-4-5"),
    ("claude-sonnet-4-5", "anthropic/claude-sonnet-4-5"),
    ("opus", "anthropic/opus"),
    ("gpt-5", "openai/gpt-5"),
    ("o3-mini", "openai/o3-mini"),
    ("openrouter/some-model", "openrouter/some-model"),
    ("mystery-model", "mystery-model"),  # OpenCode's own error says what is wrong with it
])
def test_a_model_reaches_opencode_as_provider_and_model(model: str, given: str) -> None:
    argv = adapter_for("opencode").invocation(spec_for("opencode", model), WORKSPACE).argv
    assert argv[argv.index("--model") + 1] == given == opencode_model(model)


def test_the_configuration_names_the_gateway_for_both_providers() -> None:
    spec = replace(spec_for("opencode"), gateway_url="http://gateway.agentbot.test:8082/")
    env = adapter_for("opencode").environment(spec)
    config = json.loads(env["OPENCODE_CONFIG_CONTENT"])
    assert config == opencode_config(spec.gateway_url)
    assert config["autoupdate"] is False and config["share"] == "disabled"
    assert config["provider"] == {
        "anthropic": {"options": {"baseURL": "http://gateway.agentbot.test:8082/anthropic/v1"}},
        "openai": {"options": {"baseURL": "http://gateway.agentbot.test:8082/openai/v1"}}}
    assert env["OPENCODE_DISABLE_MODELS_FETCH"] == "1"
    assert "provider" not in opencode_config(None)
