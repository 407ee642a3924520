"""OpenCode's `opencode run --format json` (step_start, text, tool_use, step_finish, error)."""

from __future__ import annotations

from typing import Any

from sandbox.events import Event, message, todo, tool
from sandbox.parsers.base import JsonLinesParser, describe_input, todo_status

TODO_TOOL = "todowrite"


class OpenCodeParser(JsonLinesParser):
    """text -> message, todowrite -> todo, other tool_use parts -> tool, error -> failure."""

    def on_object(self, obj: dict[str, Any]) -> list[Event]:
        kind = obj.get("type")
        part = _dict(obj.get("part"))
        if kind == "text":
            text = str(part.get("text", "")).strip()
            if text:
                self.summary = text
                return [message(text)]
        elif kind == "tool_use":
            return self._tool(part)
        elif kind == "step_finish":
            tokens = part.get("tokens") or {}
            self.add_stat("input_tokens", tokens.get("input"))
            self.add_stat("output_tokens", tokens.get("output"))
            self.add_stat("cost_usd", part.get("cost"))
        elif kind == "error":
            self.error = "OpenCode error: " + _error_text(obj.get("error"))
        return []

    def _tool(self, part: dict[str, Any]) -> list[Event]:
        name = str(part.get("tool", "tool"))
        state = _dict(part.get("state"))
        tool_input = state.get("input") or {}
        if name == TODO_TOOL:
            return [todo([{"text": str(item.get("content", "")),
                           "status": todo_status(item.get("status"))}
                          for item in tool_input.get("todos", []) if isinstance(item, dict)])]
        status = {"completed": "completed", "error": "failed"}.get(str(state.get("status")),
                                                                  "started")
        output = state.get("output") if status == "completed" else state.get("error")
        return [tool(name, status, call_id=str(part.get("callID", "")),
                     input=describe_input(tool_input) if tool_input else state.get("title"),
                     output=str(output) if output else None)]


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _error_text(error: Any) -> str:
    if isinstance(error, dict):
        data = _dict(error.get("data"))
        return str(data.get("message") or error.get("message") or error.get("name") or "error")
    return str(error or "error")
