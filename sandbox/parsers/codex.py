"""Codex CLI's `codex exec --json` (thread, turn and item events), as 0.169.0 prints them.

One `codex exec` is one Codex turn: `turn.started`, items as the model works (the same item
types whether the model calls its tools directly or from a code-mode `exec` script), then
`turn.completed` with the turn's usage or `turn.failed` with Codex's reason. `error` events
come before that: "Reconnecting... n/5 (...)" while Codex retries, and its final error.
"""

from __future__ import annotations

import re
from typing import Any

from sandbox.events import Event, log_line, message, todo, tool
from sandbox.parsers.base import JsonLinesParser, describe_input

# The turn's usage, as `turn.completed` carries it; input_tokens counts cached input too.
_USAGE = ("input_tokens", "cached_input_tokens", "cache_write_input_tokens", "output_tokens",
          "reasoning_output_tokens")
_HTTP_STATUS = re.compile(r"\bunexpected status (\d{3})\b")


class CodexParser(JsonLinesParser):
    """agent_message -> message, todo_list -> todo, commands/edits/MCP/search -> tool;
    turn.failed (else a last error with no turn ended) -> the run's error."""

    def __init__(self) -> None:
        super().__init__()
        self._last_error: str | None = None
        self._turn_ended = False
        self._plan: list[dict[str, str]] | None = None

    def on_object(self, obj: dict[str, Any]) -> list[Event]:
        kind = obj.get("type")
        if kind == "thread.started":
            if isinstance(obj.get("thread_id"), str):
                self.session_id = obj["thread_id"]
            return [log_line("agent", "stdout", f"Codex thread {obj.get('thread_id', '?')}")]
        if kind in ("item.started", "item.updated", "item.completed"):
            item = obj.get("item")
            return self._item(kind.split(".")[1], item) if isinstance(item, dict) else []
        if kind == "turn.completed":
            self._turn_ended = True
            self.add_stat("turns", 1)
            usage = obj.get("usage") or {}
            for name in _USAGE:
                self.add_stat(name, usage.get(name))
        elif kind == "turn.failed":
            self._turn_ended = True
            self.add_stat("turns", 1)
            self._fail(_error_message(obj.get("error")))
        elif kind == "error":
            # A retry ("Reconnecting... 2/5 (...)") or the error that fails the turn next.
            text = _error_message(obj)
            self._last_error = text
            return [log_line("agent", "stderr", f"Codex: {text}")]
        return []

    def finish(self) -> list[Event]:
        # An error that ended Codex before any turn did (a refused configuration, say).
        if not self._turn_ended and self._last_error and not self.error:
            self._fail(self._last_error)
        return []

    def _fail(self, text: str) -> None:
        found = _HTTP_STATUS.search(text)
        if found:
            self.stats["api_error_status"] = int(found.group(1))
        detail = f" (HTTP {found.group(1)})" if found else ""
        # Without its last full stop: the runner ends the sentence it puts this in.
        self.error = f"Codex stopped{detail}: {text.rstrip().removesuffix('.')}"

    def _item(self, stage: str, item: dict[str, Any]) -> list[Event]:
        kind = item.get("type")
        call_id = str(item.get("id", ""))
        if kind == "agent_message" and stage == "completed":
            text = str(item.get("text", "")).strip()
            if text:
                self.summary = text
                return [message(text)]
        elif kind == "todo_list":
            # `codex exec --json` says done or not (update_plan's in_progress is not shown).
            entries = [e for e in item.get("items", []) if isinstance(e, dict)]
            plan = [{"text": str(e.get("text", "")),
                     "status": "completed" if e.get("completed") else "pending"}
                    for e in entries]
            if plan == self._plan:  # item.completed repeats the last update
                return []
            self._plan = plan
            return [todo(plan)]
        elif kind == "command_execution":
            if stage == "started":
                return [tool("shell", "started", call_id=call_id, input=item.get("command"))]
            if stage == "completed":
                return [tool("shell", _status(item), call_id=call_id,
                             input=item.get("command"), output=item.get("aggregated_output"),
                             exit_code=item.get("exit_code"))]
        elif kind == "file_change" and stage in ("started", "completed"):
            changes = ", ".join(f"{c.get('kind', 'update')} {c.get('path', '?')}"
                                for c in item.get("changes", []) if isinstance(c, dict))
            status = "started" if stage == "started" else _status(item)
            return [tool("edit", status, call_id=call_id, input=changes)]
        elif kind == "mcp_tool_call" and stage in ("started", "completed"):
            name = f"{item.get('server', 'mcp')}.{item.get('tool', '?')}"
            status = "started" if stage == "started" else _status(item)
            output = _error_message(item["error"]) if item.get("error") else None
            return [tool(name, status, call_id=call_id,
                         input=describe_input(item.get("arguments") or {}), output=output)]
        elif kind == "web_search" and stage == "completed":
            return [tool("web_search", "completed", call_id=call_id, input=item.get("query"))]
        elif kind == "error":
            # A notice, not a failure (e.g. "Falling back from WebSockets to HTTPS transport").
            return [log_line("agent", "stderr", f"Codex: {item.get('message', 'error')}")]
        return []  # reasoning and partial updates stay private


def _status(item: dict[str, Any]) -> str:
    return "failed" if item.get("status") in ("failed", "declined") else "completed"


def _error_message(error: Any) -> str:
    if isinstance(error, dict):
        return str(error.get("message") or "unknown error")
    return str(error or "unknown error")
