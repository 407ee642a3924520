"""Plain-text agents: aider's console output and the generic `command` agent."""

from __future__ import annotations

import json
import re
from collections import deque

from sandbox.events import KINDS, Event, log_line, message, tool
from sandbox.parsers.base import StreamParser

# Lines aider prints about itself rather than as the model's answer.
_AIDER_STATUS = re.compile(
    r"^(Aider v|Main model:|Weak model:|Editor model:|Git repo:|Repo-map:|Tokens:|Cost:|"
    r"Added .* to the chat|Applied edit to |Commit |Warning:|https://aider\.chat|"
    r"Use /help|Only \d+ reflections|Can't edit|Model:|Scraping|Initial repo scan|"
    r"Scanning repo|Creating empty file |Did you mean|Please answer|Add .* to the chat\?)"
)
_MAX_EVENT_LINE = 16_000
_PATH_LIKE = re.compile(r"^[\w./-]+\.\w+$|^[\w.-]+/[\w./-]+$")
_APPLIED = re.compile(r"^Applied edit to (?P<path>.+)$")


class AiderParser(StreamParser):
    """Every line is a log; "Applied edit to X" is an edit tool call; the prose is the message."""

    def __init__(self) -> None:
        super().__init__()
        self._prose: list[str] = []
        self._in_fence = False

    def stdout_line(self, line: str) -> list[Event]:
        events = [log_line("agent", "stdout", line)]
        applied = _APPLIED.match(line.strip())
        if applied:
            events.append(tool("edit", "completed", input=applied["path"]))
        if line.strip().startswith("```"):
            self._in_fence = not self._in_fence  # edit blocks are not prose
            if self._in_fence and self._prose and _PATH_LIKE.match(self._prose[-1].strip()):
                self._prose.pop()  # the file name aider prints above an edit block
        elif not self._in_fence and not _AIDER_STATUS.match(line.strip()):
            self._prose.append(line)
        return events

    def finish(self) -> list[Event]:
        text = "\n".join(self._prose).strip()
        if not text:
            return []
        self.summary = text
        return [message(text)]


class CommandParser(StreamParser):
    """Lines that are JSON `{"kind": ..., "data": {...}}` pass through as events; others log.

    A custom agent can so report todo, tool and message events in the spec's own shapes.
    Without a message, the last lines of output become the summary.
    """

    def __init__(self) -> None:
        super().__init__()
        self._tail: deque[str] = deque(maxlen=5)

    def stdout_line(self, line: str) -> list[Event]:
        event = _own_event(line)
        if event is None:
            self._tail.append(line)
            return [log_line("agent", "stdout", line)]
        if event.kind == "message":
            self.summary = str(event.data.get("text", "")).strip() or self.summary
        return [event]

    def finish(self) -> list[Event]:
        if self.summary is None and self._tail:
            self.summary = "\n".join(self._tail).strip() or None
        return []


def _own_event(line: str) -> Event | None:
    if not line.lstrip().startswith("{") or len(line) > _MAX_EVENT_LINE:
        return None  # an oversized object is shown (truncated) as a log line instead
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    if (isinstance(obj, dict) and obj.get("kind") in KINDS and obj.get("kind") != "phase"
            and isinstance(obj.get("data"), dict)):
        if obj["kind"] == "message":
            return message(str(obj["data"].get("text", "")))
        if obj["kind"] == "log":
            return log_line("agent", str(obj["data"].get("stream", "stdout")),
                            str(obj["data"].get("text", "")))
        return Event(obj["kind"], obj["data"])
    return None
