"""What every stream parser shares: line dispatch, JSON decoding and small formatting helpers."""

from __future__ import annotations

import json
from typing import Any

from sandbox.events import Event, log_line

# Keys that name what a tool call is about, most telling first.
_INPUT_KEYS = ("command", "cmd", "file_path", "filePath", "path", "pattern", "url", "query",
               "description", "prompt")


class StreamParser:
    """Turns one agent CLI's output lines into events; collects summary, error and stats."""

    def __init__(self) -> None:
        self.summary: str | None = None  # the agent's final words, for the result
        self.error: str | None = None  # set when the agent itself reported a failure
        # Numbers add up over turns (add_stat); a CLI's labels and breakdowns are set whole.
        self.stats: dict[str, Any] = {}
        self.session_id: str | None = None  # the CLI's session, where it names its own

    def feed(self, stream: str, line: str) -> list[Event]:
        """Events for one line of the agent's `stream` ("stdout" or "stderr")."""
        if not line.strip():
            return []
        if stream == "stderr":
            return [log_line("agent", "stderr", line)]
        return self.stdout_line(line)

    def stdout_line(self, line: str) -> list[Event]:
        return [log_line("agent", "stdout", line)]

    def finish(self) -> list[Event]:
        """Events to send once the agent has exited."""
        return []


class JsonLinesParser(StreamParser):
    """A parser for CLIs that print one JSON object per line; other lines become logs."""

    def stdout_line(self, line: str) -> list[Event]:
        try:
            obj = json.loads(line)
        except ValueError:
            return [log_line("agent", "stdout", line)]
        if not isinstance(obj, dict):
            return [log_line("agent", "stdout", line)]
        return self.on_object(obj)

    def on_object(self, obj: dict[str, Any]) -> list[Event]:
        raise NotImplementedError

    def add_stat(self, name: str, value: Any) -> None:
        """Add a number to a running total (tokens and cost add up over turns)."""
        if isinstance(value, int | float) and not isinstance(value, bool):
            self.stats[name] = self.stats.get(name, 0) + value


def describe_input(value: Any) -> str:
    """A short, readable account of a tool call's input."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        for key in _INPUT_KEYS:
            if isinstance(value.get(key), str) and value[key]:
                return value[key]
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def flatten_text(content: Any) -> str:
    """Text of a string or of a list of content blocks ({type: text, text})."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(flatten_text(block) for block in content if block)
    if isinstance(content, dict) and isinstance(content.get("text"), str):
        return str(content["text"])
    return ""


def todo_status(value: Any) -> str:
    """Plan item states as the events carry them: pending, in_progress, completed, cancelled."""
    if value in ("pending", "in_progress", "completed", "cancelled"):
        return str(value)
    return "pending"
