"""The scripted model's turns for the real OpenCode: the shared scenarios (tests/clis/
scenarios.py) in OpenCode's own tools, as it offers them with an Anthropic model (1.18.33):
bash, edit, glob, grep, read, skill, task, todowrite, webfetch, write. Paths are absolute
(`filePath`); `{cwd}` is the working directory OpenCode names in its system prompt.

OpenCode retries a failed request itself, up to 5 times, and cannot be told not to; it waits
what a `retry-after` header says (else 2 s, doubling). So an overloaded provider that says
`retry-after: 0` fails the run in a second, after 6 requests; a cut stream is retried after
2 s (its error carries no headers).
"""

from __future__ import annotations

from typing import Any

from tests.clis.scenarios import FINAL, PLAN_FINAL, PROMPT
from tests.fakes.model_anthropic import Failure, ToolCall, Turn, Usage

__all__ = ["FINAL", "PLAN_FINAL", "PROMPT", "a_model_error", "the_edits", "the_plan"]

RETRIES = 5  # OpenCode's own, after the first try (SessionRetry's RETRY_MAX_RETRIES)


def write(path: str, content: str) -> ToolCall:
    return ToolCall("write", {"filePath": "{cwd}/" + path, "content": content})


def bash(command: str, description: str) -> ToolCall:
    return ToolCall("bash", {"command": command, "description": description})


def todos(*items: tuple[str, str]) -> ToolCall:
    return ToolCall("todowrite", {"todos": [
        {"content": text, "status": status, "priority": "medium"} for text, status in items]})


def the_edits() -> list[Turn]:
    """Create, edit and delete through OpenCode's write, read+edit and bash tools."""
    return [
        Turn(text="I'll add the module and look at the README.",
             tool_calls=[write("src/new_module.py", "VALUE = 42\n"),
                         ToolCall("read", {"filePath": "{cwd}/README.md"})],
             usage=Usage(input_tokens=1200, output_tokens=60, cache_creation_input_tokens=900)),
        Turn(tool_calls=[ToolCall("edit", {"filePath": "{cwd}/README.md",
                                           "oldString": "Hello.",
                                           "newString": "Hello, edited."})],
             usage=Usage(input_tokens=40, output_tokens=30, cache_read_input_tokens=2100)),
        Turn(tool_calls=[bash("rm old.txt", "Remove old.txt")],
             usage=Usage(input_tokens=35, output_tokens=20, cache_read_input_tokens=2200)),
        Turn(text=FINAL,
             usage=Usage(input_tokens=30, output_tokens=25, cache_read_input_tokens=2300)),
    ]


def the_plan() -> list[Turn]:
    """A two-item plan through todowrite, worked off alongside the edits."""
    return [
        Turn(tool_calls=[todos(("Add the module", "in_progress"),
                               ("Remove old.txt", "pending"))]),
        Turn(tool_calls=[write("src/new_module.py", "VALUE = 42\n"),
                         todos(("Add the module", "completed"),
                               ("Remove old.txt", "in_progress"))]),
        Turn(tool_calls=[bash("rm old.txt", "Remove old.txt"),
                         todos(("Add the module", "completed"),
                               ("Remove old.txt", "completed"))]),
        Turn(text=PLAN_FINAL),
    ]


def a_model_error(failure: Failure, **more: Any) -> list[Turn]:
    """A failing answer, played to OpenCode's first try and each of its retries."""
    return [Turn(text="This answer is cut half-way through.", failure=failure,
                 times=1 + RETRIES, **more)]


def overloaded() -> Failure:
    return Failure(529, "overloaded_error", "Overloaded", retry_after=0)
