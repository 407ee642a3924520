"""aider's console output, as the pinned CLI printed it (captured by scripts/capture-transcripts
from tests/clis/aider_scenarios.py), and what the parser makes of the rest of its words."""

from __future__ import annotations

from typing import Any

from sandbox.agents import adapter_for
from tests.sandbox.test_agents import replay

FINAL = "I added the module, updated the README greeting and removed old.txt."


def test_the_captured_edits_become_messages_edits_and_stats() -> None:
    events, parser = replay("aider", "aider-captured-edits.txt")

    # aider asked twice (the files joined the chat first): one message per answer, without
    # its edit blocks, the file names above them, the command's echo or the questions aider
    # answered itself (printed without a newline, in front of the next line).
    assert [data["text"] for kind, data in events if kind == "message"] == [FINAL, FINAL]
    assert [(data["name"], data["status"], data["input"]) for kind, data in events
            if kind == "tool"] == [("edit", "completed", "README.md"),
                                   ("edit", "completed", "src/new_module.py"),
                                   ("shell", "started", "rm old.txt"),
                                   ("shell", "completed", "rm old.txt")]
    shells = [data for kind, data in events if kind == "tool" and data["name"] == "shell"]
    assert shells[0]["id"] == shells[1]["id"] and "output" not in shells[1]
    assert parser.summary == FINAL and parser.error is None
    # As aider prints them (rounded: 2.7k and 2.8k sent).
    assert parser.stats == {"turns": 2, "input_tokens": 2700 + 2800, "output_tokens": 88 + 88,
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


def test_each_command_aider_runs_is_a_shell_call_with_its_output() -> None:
    """Commands run once "Run shell command(s)?" is answered; a command's output is what aider
    prints up to the next command or question; "Running" in an answer's prose is prose."""
    events, parser = feed(
        *BANNER, "Running the tests first, then cleaning up.", "```bash", "pytest -q",
        "rm -r build", "```", "Tokens: 1k sent, 9 received. Cost: $0.01 message, $0.01 session.",
        "pytest -q", "rm -r build",
        "Run shell commands? (Y)es/(N)o/(A)ll/(S)kip all/(D)on't ask again [Yes]: ",
        "Running pytest -q", "3 passed in 0.01s", "Running rm -r build",
        "Add command output to the chat? (Y)es/(N)o/(D)on't ask again [Yes]: Added 1 line of "
        "output to the chat.")

    tools = [data for kind, data in events if kind == "tool"]
    assert [(t["status"], t["input"], t.get("output")) for t in tools] == [
        ("started", "pytest -q", None), ("completed", "pytest -q", "3 passed in 0.01s"),
        ("started", "rm -r build", None), ("completed", "rm -r build", None)]
    assert [t["id"] for t in tools] == ["aider-shell-1"] * 2 + ["aider-shell-2"] * 2
    assert [data["text"] for kind, data in events if kind == "message"] == [
        "Running the tests first, then cleaning up."]
    assert parser.error is None


def test_a_command_still_running_when_aider_ends_is_closed_by_the_end() -> None:
    events, _ = feed(*BANNER, "Run shell command? (Y)es/(N)o/(D)on't ask again [Yes]: ",
                     "Running make", "built")

    assert [(d["status"], d.get("output")) for k, d in events if k == "tool"] == [
        ("started", None), ("completed", "built")]


def test_an_error_aider_does_not_explain_is_said_in_litellms_words() -> None:
    """aider explains some errors in a line of its own (a 401, an overloaded provider); for the
    others (a cut stream) litellm's message, wrapped by aider's console, is all there is."""
    _, parser = feed(
        *BANNER, "Working on it.",
        "Helitellm.APIConnectionError: AnthropicException - peer closed connection without ",
        "sending complete message body (incomplete chunked read)")

    assert parser.error == ("aider stopped (APIConnectionError): AnthropicException - peer "
                            "closed connection without sending complete message body "
                            "(incomplete chunked read)")


def test_a_command_printing_without_end_keeps_only_the_start_of_its_output() -> None:
    """A command the model runs may print without end (`yes`): the parser keeps the start of
    it, as much as its event shows, not all of it; a model error's lines are capped too."""
    parser = adapter_for("aider").parser()
    parser.feed("stdout", BANNER[0])
    parser.feed("stdout", "Run shell command? (Y)es/(N)o/(D)on't ask again [Yes]: ")
    parser.feed("stdout", "Running yes")
    for _ in range(100_000):
        parser.feed("stdout", "y" * 50)
    assert sum(len(line) + 1 for line in parser._output) <= 5_000  # of 5.1 MB printed
    [completed] = [data for kind, data in
                   ((e.kind, e.data) for e in parser.finish()) if kind == "tool"]
    assert completed["output"].startswith("y" * 50) and len(completed["output"]) <= 2_100

    parser = adapter_for("aider").parser()
    parser.feed("stdout", BANNER[0])
    parser.feed("stdout", "litellm.APIConnectionError: cut")
    for n in range(10_000):
        parser.feed("stdout", f"line {n} of the error")
    assert len(parser._error_lines) == 40
    parser.finish()
    assert parser.error is not None and parser.error.startswith(
        "aider stopped (APIConnectionError): cut line 0 of the error")
