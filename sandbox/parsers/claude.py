"""Claude Code's `--output-format stream-json` (system, assistant, user, result messages)."""

from __future__ import annotations

import re
from typing import Any

from sandbox.events import Event, log_line, message, todo, tool
from sandbox.parsers.base import JsonLinesParser, describe_input, flatten_text, todo_status

TODO_TOOL = "TodoWrite"  # the whole plan in each call (older versions, some models)
TASK_CREATE, TASK_UPDATE = "TaskCreate", "TaskUpdate"  # one item per call (2.1 and later)
PLAN_TOOLS = frozenset({TODO_TOOL, TASK_CREATE, TASK_UPDATE, "TaskList", "TaskGet"})
SYNTHETIC_MODEL = "<synthetic>"
_CREATED = re.compile(r"Task #(\S+) created")
# `result` fields kept as they are, under the runner's `agent_` prefix.
_RESULT_NUMBERS = {"total_cost_usd": "cost_usd", "num_turns": "turns", "ttft_ms": "ttft_ms",
                   "duration_ms": "duration_ms", "duration_api_ms": "duration_api_ms"}
_USAGE_NUMBERS = ("input_tokens", "output_tokens", "cache_creation_input_tokens",
                  "cache_read_input_tokens")
_MODEL_USAGE = {"inputTokens": "input_tokens", "outputTokens": "output_tokens",
                "cacheReadInputTokens": "cache_read_input_tokens",
                "cacheCreationInputTokens": "cache_creation_input_tokens",
                "costUSD": "cost_usd"}


class ClaudeParser(JsonLinesParser):
    """Assistant text -> message; TodoWrite and the Task tools -> todo; other tool_use and
    tool_result -> tool; the result -> summary, error and stats."""

    def __init__(self) -> None:
        super().__init__()
        self._tool_names: dict[str, str] = {}
        self._tool_inputs: dict[str, dict[str, Any]] = {}
        self._tasks: dict[str, dict[str, str]] = {}  # the Task tools' plan, by task id

    def on_object(self, obj: dict[str, Any]) -> list[Event]:
        kind = obj.get("type")
        if kind == "system" and obj.get("subtype") == "init":
            if isinstance(obj.get("session_id"), str):
                self.session_id = obj["session_id"]
            version = obj.get("claude_code_version")
            return [log_line("agent", "stdout",
                             f"Claude Code {version + ' ' if version else ''}session started "
                             f"(model {obj.get('model', '?')})")]
        if kind == "assistant":
            return self._assistant(obj.get("message") or {})
        if kind == "user":
            return self._tool_results(obj.get("message") or {}, obj.get("tool_use_result"))
        if kind == "result":
            self._result(obj)
        return []  # stream_event partials, hooks, rate-limit notices: nothing to show

    def _assistant(self, msg: dict[str, Any]) -> list[Event]:
        events: list[Event] = []
        synthetic = msg.get("model") == SYNTHETIC_MODEL
        content = msg.get("content")
        if isinstance(content, str):
            content = [{"type": "text", "text": content}]
        for block in content if isinstance(content, list) else []:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text" and str(block.get("text", "")).strip():
                # "<synthetic>": the CLI's own words (an API error), not the model's.
                events.append(log_line("agent", "stdout", block["text"]) if synthetic
                              else message(block["text"]))
            elif block.get("type") == "tool_use":
                name = str(block.get("name", "tool"))
                call_id = str(block.get("id", ""))
                tool_input = block.get("input")
                tool_input = tool_input if isinstance(tool_input, dict) else {}
                self._tool_names[call_id] = name
                self._tool_inputs[call_id] = tool_input
                if name == TODO_TOOL:
                    items = [{"text": str(item.get("content", "")),
                              "status": todo_status(item.get("status"))}
                             for item in tool_input.get("todos", []) if isinstance(item, dict)]
                    events.append(todo(items))
                elif name not in PLAN_TOOLS:
                    events.append(tool(name, "started", call_id=call_id,
                                       input=describe_input(tool_input)))
        return events

    def _tool_results(self, msg: dict[str, Any], structured: Any) -> list[Event]:
        events: list[Event] = []
        content = msg.get("content")
        for block in content if isinstance(content, list) else []:
            if not isinstance(block, dict) or block.get("type") != "tool_result":
                continue
            call_id = str(block.get("tool_use_id", ""))
            name = self._tool_names.get(call_id, "tool")
            if name in PLAN_TOOLS:
                # TodoWrite's todo event went out with the call; a Task tool's change counts
                # once the CLI accepted it (a TaskCreate's id comes with its result).
                if name in (TASK_CREATE, TASK_UPDATE) and not block.get("is_error"):
                    events.extend(self._task_change(name, call_id, block, structured))
                continue
            status = "failed" if block.get("is_error") else "completed"
            events.append(tool(name, status, call_id=call_id,
                               output=flatten_text(block.get("content"))))
        return events

    def _task_change(self, name: str, call_id: str, block: dict[str, Any],
                     structured: Any) -> list[Event]:
        tool_input = self._tool_inputs.get(call_id, {})
        if name == TASK_CREATE:
            task = structured.get("task") if isinstance(structured, dict) else None
            task_id = task.get("id") if isinstance(task, dict) else None
            if task_id is None:
                found = _CREATED.search(flatten_text(block.get("content")))
                task_id = found.group(1) if found else f"#{len(self._tasks) + 1}"
            self._tasks[str(task_id)] = {"text": str(tool_input.get("subject", "")),
                                         "status": "pending"}
        else:
            task_id = str(tool_input.get("taskId", ""))
            item = self._tasks.get(task_id)
            if item is None:
                return []
            if tool_input.get("status") == "deleted":
                del self._tasks[task_id]
            else:
                if "status" in tool_input:
                    item["status"] = todo_status(tool_input["status"])
                if isinstance(tool_input.get("subject"), str):
                    item["text"] = tool_input["subject"]
        return [todo([dict(item) for item in self._tasks.values()])]

    def _result(self, obj: dict[str, Any]) -> None:
        text = obj["result"].strip() if isinstance(obj.get("result"), str) else ""
        reason = obj.get("terminal_reason")
        failed = obj.get("is_error") or obj.get("subtype") not in (None, "success")
        if not failed:
            self.summary = text or self.summary
        else:
            # The CLI's own words: its result text (an API error), else its `errors` list.
            errors = [str(e) for e in obj.get("errors") or [] if str(e).strip()]
            why = text or "; ".join(errors) or str(obj.get("subtype") or "an error")
            status = obj.get("api_error_status")
            detail = ", ".join(str(part) for part in (
                reason or obj.get("subtype"), f"HTTP {status}" if status else None) if part)
            self.error = f"Claude Code stopped ({detail}): {why}" if detail else (
                f"Claude Code stopped: {why}")
        for field, name in _RESULT_NUMBERS.items():
            self.add_stat(name, obj.get(field))
        usage = obj.get("usage") or {}
        for name in _USAGE_NUMBERS:
            self.add_stat(name, usage.get(name))
        if isinstance(reason, str):
            self.stats["terminal_reason"] = reason
        if isinstance(obj.get("api_error_status"), int):
            self.stats["api_error_status"] = obj["api_error_status"]
        per_model = obj.get("modelUsage")
        if isinstance(per_model, dict) and per_model:
            self.stats["model_usage"] = {
                str(model): {ours: numbers[theirs] for theirs, ours in _MODEL_USAGE.items()
                             if isinstance(numbers.get(theirs), int | float)}
                for model, numbers in per_model.items() if isinstance(numbers, dict)}
