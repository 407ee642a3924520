"""The scripted model's turns the real-CLI tests and the transcript capture share."""

from __future__ import annotations

from tests.fakes.model_anthropic import Failure, ToolCall, Turn, Usage

PROMPT = "Add the module, update the README greeting and remove old.txt."
FINAL = "Added the module, updated the README and removed old.txt."
PLAN_FINAL = "Both steps are done."


def the_edits() -> list[Turn]:
    """Create, edit and delete through Claude Code's own Write, Read+Edit and Bash tools."""
    return [
        Turn(text="I'll add the module and look at the README.",
             tool_calls=[ToolCall("Write", {"file_path": "{cwd}/src/new_module.py",
                                            "content": "VALUE = 42\n"}),
                         ToolCall("Read", {"file_path": "{cwd}/README.md"})],
             usage=Usage(input_tokens=1200, output_tokens=60, cache_creation_input_tokens=900)),
        Turn(tool_calls=[ToolCall("Edit", {"file_path": "{cwd}/README.md",
                                           "old_string": "Hello.",
                                           "new_string": "Hello, edited."})],
             usage=Usage(input_tokens=40, output_tokens=30, cache_read_input_tokens=2100)),
        Turn(tool_calls=[ToolCall("Bash", {"command": "rm old.txt",
                                           "description": "Remove old.txt"})],
             usage=Usage(input_tokens=35, output_tokens=20, cache_read_input_tokens=2200)),
        Turn(text=FINAL,
             usage=Usage(input_tokens=30, output_tokens=25, cache_read_input_tokens=2300)),
    ]


def the_plan() -> list[Turn]:
    """A two-item plan through the Task tools, worked off alongside the edits."""
    return [
        Turn(tool_calls=[ToolCall("TaskCreate", {"subject": "Add the module",
                                                 "description": "src/new_module.py",
                                                 "activeForm": "Adding the module"}),
                         ToolCall("TaskCreate", {"subject": "Remove old.txt",
                                                 "description": "no longer used",
                                                 "activeForm": "Removing old.txt"})]),
        Turn(tool_calls=[ToolCall("TaskUpdate", {"taskId": "1", "status": "in_progress"}),
                         ToolCall("Write", {"file_path": "{cwd}/src/new_module.py",
                                            "content": "VALUE = 42\n"})]),
        Turn(tool_calls=[ToolCall("TaskUpdate", {"taskId": "1", "status": "completed"}),
                         ToolCall("TaskUpdate", {"taskId": "2", "status": "in_progress"}),
                         ToolCall("Bash", {"command": "rm old.txt"})]),
        Turn(tool_calls=[ToolCall("TaskUpdate", {"taskId": "2", "status": "completed"})]),
        Turn(text=PLAN_FINAL),
    ]


def a_model_error(failure: Failure) -> list[Turn]:
    """One failing turn; a cut stream is tried again once without streaming, cut as well."""
    return [Turn(text="This answer is cut half-way through.", failure=failure, times=2)]


def past_the_turn_limit() -> list[Turn]:
    """A file written, then more turns than a limit of 2 allows."""
    return [Turn(tool_calls=[ToolCall("Write", {"file_path": "{cwd}/notes.md",
                                                "content": "first step\n"})]),
            Turn(tool_calls=[ToolCall("Bash", {"command": "true"})]),
            Turn(tool_calls=[ToolCall("Bash", {"command": "true"})]),
            Turn(text="never reached")]
