"""Claude Code's `--output-format stream-json` (system, assistant, user, result messages)."""

from __future__ import annotations

from typing import Any

from sandbox.events import Event, log_line, message, todo, tool
from sandbox.parsers.base import JsonLinesParser, describe_input, flatten_text, todo_status

TODO_TOOL = "TodoWrite"


class ClaudeParser(JsonLinesParser):
    """Assistant text -> message, TodoWrite -> todo, other tool_use/tool_result -> tool."""

    def __init__(self) -> None:
        super().__init__()
        self._tool_names: dict[str, str] = {}

    def on_object(self, obj: dict[str, Any]) -> list[Event]:
        kind = obj.get("type")
        if kind == "system" and obj.get("subtype") == "init":
            return [log_line("agent", "stdout",
                             f"Claude Code session started (model {obj.get('model', '?')})")]
        if kind == "assistant":
            return self._assistant(obj.get("message") or {})
        if kind == "user":
            return self._tool_results(obj.get("message") or {})
        if kind == "result":
            self._result(obj)
        return []  # stream_event partials, hooks, rate-limit notices: nothing to show

    def _assistant(self, msg: dict[str, Any]) -> list[Event]:
        events: list[Event] = []
        content = msg.get("content")
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        for block in content if isinstance(content, list) else []:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text" and str(block.get("text", "")).strip():
                events.append(message(block["text"]))
            elif block.get("type") == "tool_use":
                name = str(block.get("name", "tool"))
                call_id = str(block.get("id", ""))
                self._tool_names[call_id] = name
                tool_input = block.get("input") or {}
                if name == TODO_TOOL:
                    items = [{"text": str(item.get("content", "")),
                              "status": todo_status(item.get("status"))}
                             for item in tool_input.get("todos", []) if isinstance(item, dict)]
                    events.append(todo(items))
                else:
                    events.append(tool(name, "started", call_id=call_id,
                                       input=describe_input(tool_input)))
        return events

    def _tool_results(self, msg: dict[str, Any]) -> list[Event]:
        events: list[Event] = []
        content = msg.get("content")
        for block in content if isinstance(content, list) else []:
            if not isinstance(block, dict) or block.get("type") != "tool_result":
                continue
            call_id = str(block.get("tool_use_id", ""))
            name = self._tool_names.get(call_id, "tool")
            if name == TODO_TOOL:
                continue  # the todo event already carried the plan
            status = "failed" if block.get("is_error") else "completed"
            events.append(tool(name, status, call_id=call_id,
                               output=flatten_text(block.get("content"))))
        return events

    def _result(self, obj: dict[str, Any]) -> None:
        if isinstance(obj.get("result"), str) and obj["result"].strip():
            self.summary = obj["result"].strip()
        if obj.get("is_error") or obj.get("subtype") not in (None, "success"):
            self.error = f"Claude Code ended with {obj.get('subtype', 'an error')}"
            if self.summary:
                self.error += f": {self.summary}"
        self.add_stat("cost_usd", obj.get("total_cost_usd"))
        self.add_stat("turns", obj.get("num_turns"))
        usage = obj.get("usage") or {}
        self.add_stat("input_tokens", usage.get("input_tokens"))
        self.add_stat("output_tokens", usage.get("output_tokens"))
