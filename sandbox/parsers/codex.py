"""Codex CLI's `codex exec --json` (thread, turn and item events)."""

from __future__ import annotations

from typing import Any

from sandbox.events import Event, log_line, message, todo, tool
from sandbox.parsers.base import JsonLinesParser, describe_input


class CodexParser(JsonLinesParser):
    """agent_message -> message, todo_list -> todo, commands/edits/MCP/search -> tool."""

    def on_object(self, obj: dict[str, Any]) -> list[Event]:
        kind = obj.get("type")
        if kind == "thread.started":
            return [log_line("agent", "stdout", f"Codex thread {obj.get('thread_id', '?')}")]
        if kind in ("item.started", "item.updated", "item.completed"):
            item = obj.get("item")
            return self._item(kind.split(".")[1], item) if isinstance(item, dict) else []
        if kind == "turn.completed":
            usage = obj.get("usage") or {}
            for name in ("input_tokens", "cached_input_tokens", "output_tokens"):
                self.add_stat(name, usage.get(name))
        elif kind == "turn.failed":
            self.error = "Codex turn failed: " + _error_message(obj.get("error"))
        elif kind == "error":
            self.error = "Codex error: " + _error_message(obj)
            return [log_line("agent", "stderr", self.error)]
        return []

    def _item(self, stage: str, item: dict[str, Any]) -> list[Event]:
        kind = item.get("type")
        call_id = str(item.get("id", ""))
        if kind == "agent_message" and stage == "completed":
            text = str(item.get("text", "")).strip()
            if text:
                self.summary = text
                return [message(text)]
        elif kind == "todo_list":
            return [todo([{"text": str(entry.get("text", "")),
                           "status": "completed" if entry.get("completed") else "pending"}
                          for entry in item.get("items", []) if isinstance(entry, dict)])]
        elif kind == "command_execution":
            if stage == "started":
                return [tool("shell", "started", call_id=call_id, input=item.get("command"))]
            if stage == "completed":
                return [tool("shell", _status(item), call_id=call_id,
                             input=item.get("command"), output=item.get("aggregated_output"),
                             exit_code=item.get("exit_code"))]
        elif kind == "file_change" and stage == "completed":
            changes = ", ".join(f"{c.get('kind', 'update')} {c.get('path', '?')}"
                                for c in item.get("changes", []) if isinstance(c, dict))
            return [tool("edit", _status(item), call_id=call_id, input=changes)]
        elif kind == "mcp_tool_call" and stage in ("started", "completed"):
            name = f"{item.get('server', 'mcp')}.{item.get('tool', '?')}"
            status = "started" if stage == "started" else _status(item)
            output = _error_message(item["error"]) if item.get("error") else None
            return [tool(name, status, call_id=call_id,
                         input=describe_input(item.get("arguments") or {}), output=output)]
        elif kind == "web_search" and stage == "completed":
            return [tool("web_search", "completed", call_id=call_id, input=item.get("query"))]
        elif kind == "error":
            return [log_line("agent", "stderr", str(item.get("message", "error")))]
        return []  # reasoning and partial updates stay private


def _status(item: dict[str, Any]) -> str:
    return "failed" if item.get("status") in ("failed", "declined") else "completed"


def _error_message(error: Any) -> str:
    if isinstance(error, dict):
        return str(error.get("message") or "unknown error")
    return str(error or "unknown error")
