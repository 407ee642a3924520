"""The scripted model's turns for the real Codex: the shared scenarios (tests/clis/scenarios.py)
in Codex's own tools.

With its default models, Codex 0.169.0 offers the model one tool, `exec` (a free-form
JavaScript cell, "code mode"), that calls its real tools as `tools.apply_patch(...)`,
`tools.exec_command(...)`, `tools.update_plan(...)`; the model writes such a cell, and Codex
reports each tool it ran as an item of its own.
"""

from __future__ import annotations

import json
from typing import Any

from sandbox.agents import CODEX_PROVIDER
from tests.clis.scenarios import FINAL, PLAN_FINAL, PROMPT
from tests.fakes.model_openai import Failure, ToolCall, Turn, Usage

__all__ = ["FINAL", "PLAN_FINAL", "PROMPT", "a_model_error", "code", "the_edits", "the_plan"]

ADD_MODULE = "*** Begin Patch\n*** Add File: src/new_module.py\n+VALUE = 42\n*** End Patch\n"
EDIT_README = ("*** Begin Patch\n*** Update File: README.md\n@@\n # Demo\n \n-Hello.\n"
               "+Hello, edited.\n*** End Patch\n")
DELETE_OLD = "*** Begin Patch\n*** Delete File: old.txt\n*** End Patch\n"


def code(*calls: tuple[str, Any]) -> ToolCall:
    """An `exec` cell awaiting each (tool, argument) in turn, printing what each returned."""
    lines = [f"text(JSON.stringify(await tools.{name}({json.dumps(argument)})));"
             for name, argument in calls]
    return ToolCall("exec", {"input": "\n".join(lines)})


def plan(*steps: tuple[str, str]) -> tuple[str, Any]:
    return ("update_plan", {"plan": [{"step": step, "status": status}
                                     for step, status in steps]})


def the_edits() -> list[Turn]:
    """Create, edit and delete through Codex's apply_patch, reading with exec_command."""
    return [
        Turn(text="I'll add the module and look at the README.",
             tool_calls=[code(("apply_patch", ADD_MODULE),
                              ("exec_command", {"cmd": "cat README.md"}))],
             usage=Usage(input_tokens=1200, output_tokens=60, cache_creation_input_tokens=900)),
        Turn(tool_calls=[code(("apply_patch", EDIT_README))],
             usage=Usage(input_tokens=40, output_tokens=30, cache_read_input_tokens=2100)),
        Turn(tool_calls=[code(("apply_patch", DELETE_OLD))],
             usage=Usage(input_tokens=35, output_tokens=20, cache_read_input_tokens=2200)),
        Turn(text=FINAL,
             usage=Usage(input_tokens=30, output_tokens=25, cache_read_input_tokens=2300)),
    ]


def the_plan() -> list[Turn]:
    """A two-step plan through update_plan, worked off alongside the edits."""
    return [
        Turn(tool_calls=[code(plan(("Add the module", "in_progress"),
                                   ("Remove old.txt", "pending")))]),
        Turn(tool_calls=[code(("apply_patch", ADD_MODULE),
                              plan(("Add the module", "completed"),
                                   ("Remove old.txt", "in_progress")))]),
        Turn(tool_calls=[code(("exec_command", {"cmd": "rm old.txt"}),
                              plan(("Add the module", "completed"),
                                   ("Remove old.txt", "completed")))]),
        Turn(text=PLAN_FINAL),
    ]


def a_model_error(failure: Failure) -> list[Turn]:
    """One failing answer (Codex is told not to retry: see `NO_RETRIES`)."""
    return [Turn(text="This answer is cut half-way through.", failure=failure)]


# $CODEX_HOME/config.toml for tests: the gateway's provider (which the adapter names) without
# retries, so an error the script plays ends the run at once instead of after 5 x 5 tries
# with backoff. It merges with the adapter's -c settings of the same provider.
NO_RETRIES = (f"[model_providers.{CODEX_PROVIDER}]\n"
              "request_max_retries = 0\nstream_max_retries = 0\n")
