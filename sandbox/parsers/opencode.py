"""OpenCode's `opencode run --format json` (1.18.x): one JSON object a line, each with `type`
(step_start, text, tool_use, step_finish, error) and the session's `part` or `error`.

A step is one model request: `step_finish` carries its tokens (input without the cache, the
cache's reads and writes apart, output, reasoning) and cost. A tool part is printed once, when
the tool has finished (`state.status` completed or error). The model's failure, after
OpenCode's own retries, is one `error` line: `{name: APIError, data: {message, statusCode}}`.
"""

from __future__ import annotations

from typing import Any

from sandbox.events import Event, message, todo, tool
from sandbox.parsers.base import JsonLinesParser, describe_input, todo_status

TODO_TOOL = "todowrite"
# step_finish's tokens -> the stats' names (as Claude Code's and Codex's parsers name them)
_TOKENS = {("input",): "input_tokens", ("output",): "output_tokens",
           ("reasoning",): "reasoning_output_tokens", ("cache", "read"): "cached_input_tokens",
           ("cache", "write"): "cache_write_input_tokens"}


class OpenCodeParser(JsonLinesParser):
    """text -> message, todowrite -> todo, other tool parts -> tool, error -> failure."""

    def on_object(self, obj: dict[str, Any]) -> list[Event]:
        kind = obj.get("type")
        part = _dict(obj.get("part"))
        if isinstance(obj.get("sessionID"), str) and self.session_id is None:
            self.session_id = obj["sessionID"]
        if kind == "text":
            text = str(part.get("text", "")).strip()
            if text:
                self.summary = text
                return [message(text)]
        elif kind == "tool_use":
            return self._tool(part)
        elif kind == "step_finish":
            self.add_stat("turns", 1)
            tokens = _dict(part.get("tokens"))
            for path, name in _TOKENS.items():
                value: Any = tokens
                for key in path:
                    value = _dict(value).get(key) if isinstance(value, dict) else None
                self.add_stat(name, value)
            self.add_stat("cost_usd", part.get("cost"))
            if isinstance(part.get("reason"), str):
                self.stats["stop_reason"] = part["reason"]
        elif kind == "error":
            self._fail(_dict(obj.get("error")) or {"data": {"message": obj.get("error")}})
        return []

    def _tool(self, part: dict[str, Any]) -> list[Event]:
        name = str(part.get("tool", "tool"))
        state = _dict(part.get("state"))
        tool_input = _dict(state.get("input"))
        if name == TODO_TOOL and state.get("status") != "error":
            return [todo([{"text": str(item.get("content", "")),
                           "status": todo_status(item.get("status"))}
                          for item in tool_input.get("todos", []) if isinstance(item, dict)])]
        status = {"completed": "completed", "error": "failed"}.get(str(state.get("status")),
                                                                  "started")
        output = state.get("output") if status == "completed" else state.get("error")
        if name == "invalid":  # a call of a tool OpenCode does not offer: its words say which
            name = str(tool_input.get("tool") or name)
            status, output = "failed", output or tool_input.get("error")
        return [tool(name, status, call_id=str(part.get("callID", "")),
                     input=describe_input(tool_input) if tool_input else state.get("title"),
                     output=str(output) if output else None)]

    def _fail(self, error: dict[str, Any]) -> None:
        data = _dict(error.get("data"))
        text = str(data.get("message") or error.get("message") or error.get("name") or "error")
        status = data.get("statusCode")
        detail = ""
        if isinstance(status, int) and not isinstance(status, bool):
            self.stats["api_error_status"] = status
            detail = f" (HTTP {status})"
        # Without its last full stop: the runner ends the sentence it puts this in.
        self.error = f"OpenCode stopped{detail}: {text.strip().removesuffix('.')}"


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}
