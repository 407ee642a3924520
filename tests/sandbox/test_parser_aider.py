"""aider's console output, as the pinned CLI printed it (captured by scripts/capture-transcripts
from tests/clis/aider_scenarios.py), and what the parser makes of the rest of its words."""

from __future__ import annotations

from typing import Any

from sandbox.agents import adapter_for
from tests.sandbox.test_agents import replay

FINAL = "I added the module and updated the README greeting; old.txt goes with the command below."


def test_the_captured_edits_become_messages_edits_and_stats() -> None:
    events, parser = replay("aider", "aider-captured-edits.txt")

    # aider asked twice (the files joined the chat first): one message per answer, without
    # its edit blocks, the file names above them or the suggested command's echo.
    assert [data["text"] for kind, data in events if kind == "message"] == [FINAL, FINAL]
    assert [(data["name"], data["input"]) for kind, data in events if kind == "tool"] == [
        ("edit", "README.md"), ("edit", "src/new_module.py")]
    assert parser.summary == FINAL and parser.error is None
    # As aider prints them (rounded: 2.7k and 2.8k sent).
    assert parser.stats == {"turns": 2, "input_tokens": 2700 + 2800, "output_tokens": 92 + 92,
                            "cost_usd": 0.02}
    assert any(kind == "log" and data["text"] == "Aider v0.86.2" for kind, data in events)


def test_a_captured_error_fails_the_agent_though_aider_exits_0() -> None:
    events, parser = replay("aider", "aider-captured-unauthorized.txt")

    assert parser.error == ("aider stopped (AuthenticationError): The API provider is not able "
                            "to authenticate you. Check your API key")
    assert [kind for kind, _ in events if kind != "log"] == []
    assert parser.summary is None and "turns" not in parser.stats


def feed(*lines: str) -> tuple[list[tuple[str, dict[str, Any]]], Any]:
    parser = adapter_for("aider").parser()
    events = [e for line in lines for e in parser.feed("stdout", line)]
    events.extend(parser.finish())
    return [(e.kind, e.data) for e in events], parser


BANNER = ("Aider v0.86.2", "Main model: claude-sonnet-4-5 with diff edit format")


def test_an_error_aider_retried_is_forgotten_once_an_answer_comes() -> None:
    """A stream cut mid-answer: the half answer (an edit block left open) is no prose."""
    events, parser = feed(
        *BANNER, "Working on it.", "README.md", "```", "<<<<<<< SEARCH",
        "Helitellm.APIConnectionError: AnthropicException - peer closed connection without ",
        "sending complete message body (incomplete chunked read)",
        "Retrying in 0.2 seconds...",
        "Done.", "Tokens: 1.2M sent, 3.4k cache write, 5k cache hit, 7 received. Cost: $1.50 "
        "message, $2.25 session.")

    assert parser.error is None
    assert [data["text"] for kind, data in events if kind == "message"] == ["Done."]
    assert parser.stats == {"turns": 1, "input_tokens": 1_200_000,
                            "cache_write_input_tokens": 3400, "cached_input_tokens": 5000,
                            "output_tokens": 7, "cost_usd": 2.25}


def test_an_error_after_its_last_retry_fails_the_agent() -> None:
    _, parser = feed(
        *BANNER, "litellm.InternalServerError: AnthropicError - b'{\"type\": \"error\", ",
        "\"error\": {\"type\": \"overloaded_error\"}}'",
        "The API provider's servers are down or overloaded.", "Retrying in 0.2 seconds...",
        "litellm.InternalServerError: AnthropicError - b'{\"type\": \"error\"}'",
        "The API provider's servers are down or overloaded.")

    assert parser.error == ("aider stopped (InternalServerError): The API provider's servers "
                            "are down or overloaded")
