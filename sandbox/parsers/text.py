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
    r"Scanning repo|Creating empty file |Did you mean|Please answer|Add .* to the chat\?|"
    r"Retrying in )"
)
# A model error as aider prints it (0.86): litellm's exception, its body over some lines, then
# aider's own explanation; "Retrying in N seconds..." when it tries again.
_AIDER_ERROR = re.compile(r"litellm\.(?P<kind>\w+): (?P<said>.*)$")
# The errors aider explains in a line of its own after litellm's message (aider/exceptions.py
# EXCEPTIONS, the ones with a description); for the others litellm's message is all it says.
_AIDER_EXPLAINED = frozenset((
    "AuthenticationError", "BadGatewayError", "ContentPolicyViolationError", "ImageFetchError",
    "InternalServerError", "RateLimitError", "ServiceUnavailableError", "Timeout"))
# "Tokens: 2.1k sent, 1.5k cache write, 3.2k cache hit, 96 received. Cost: $0.0077 message,
# $0.0077 session." (rounded by aider: 2.1k is 2,100).
_AIDER_TOKENS = re.compile(r"(?P<n>\d+(?:\.\d+)?)(?P<unit>[kM]?) (?P<what>sent|received|"
                           r"cache write|cache hit)\b")
_AIDER_SESSION_COST = re.compile(r"\$(?P<usd>\d+(?:\.\d+)?) session")
_AIDER_USAGE = {"sent": "input_tokens", "received": "output_tokens",
                "cache write": "cache_write_input_tokens", "cache hit": "cached_input_tokens"}
_MAX_EVENT_LINE = 16_000
_PATH_LIKE = re.compile(r"^[\w./-]+\.\w+$|^[\w.-]+/[\w./-]+$")
_APPLIED = re.compile(r"^Applied edit to (?P<path>.+)$")
# A question aider asked and answered itself (its default, stdin being closed): printed without
# a newline, so what aider prints next follows it on the same line.
_AIDER_QUESTION = re.compile(r"^(?P<question>[^\n]*?\?) \(Y\)es/\(N\)o(?:/\([A-Z]\)[\w' ]+)* "
                             r"\[[^\]]*\]: ")
# What aider prints before each command it runs, once "Run shell command?" was answered.
_RUNNING = re.compile(r"^Running (?P<command>.+)$")
# What is kept of a command's output (its event shows 2,000 characters) and of a model error's
# lines: a command printing without end must not grow the runner's memory with it.
_OUTPUT_KEPT = 4_000
_ERROR_LINES_KEPT = 40


class AiderParser(StreamParser):
    """Every line is a log. The prose of each answer (up to its "Tokens:" line, without edit
    blocks and the file names above them) is a message; "Applied edit to X" an edit; each
    command aider runs for the model a shell call, its output the lines up to the next command
    or question (aider does not print a command's exit status); a model error that aider gave
    up on fails the agent (aider itself exits 0)."""

    def __init__(self) -> None:
        super().__init__()
        self._started = False  # past aider's banner; what comes before is set-up chatter
        self._prose: list[str] = []
        self._in_fence = False
        self._error_kind: str | None = None  # litellm's exception, until an answer comes
        self._error_lines: list[str] = []
        self._error_open = False  # still reading the error's lines
        self._shell = False  # past a "Run shell command?" question: "Running X" lines follow
        self._command: tuple[str, str] | None = None  # the command running: (call id, command)
        self._output: list[str] = []  # what it printed so far (its first _OUTPUT_KEPT)
        self._output_size = 0
        self._commands = 0

    def stdout_line(self, line: str) -> list[Event]:
        events = [log_line("agent", "stdout", line)]
        asked = _AIDER_QUESTION.match(line)
        if asked:
            line = line[asked.end():]
            events.extend(self._end_command())
            self._shell = asked["question"] in ("Run shell command?", "Run shell commands?")
            if not line.strip():
                return events
        if self._shell:
            running = _RUNNING.match(line.strip())
            if running:
                events.extend(self._end_command())
                self._commands += 1
                self._command = (f"aider-shell-{self._commands}", running["command"])
                events.append(tool("shell", "started", call_id=self._command[0],
                                   input=self._command[1]))
                return events
            if self._command is not None:
                if self._output_size < _OUTPUT_KEPT:
                    self._output.append(line)
                    self._output_size += len(line) + 1
                return events
        text = line.strip()
        if text.startswith("Aider v"):
            self._started = True
        failed = _AIDER_ERROR.search(line)
        if failed:
            # A cut answer ends where the error begins: what came of it is no answer.
            self._error_kind, self._error_open = failed["kind"], True
            self._error_lines = [failed["said"].strip()]
            self._prose, self._in_fence = [], False
            return events
        if self._error_open:
            if text.startswith(("Retrying in ", "Tokens:")):
                self._error_open = False
            elif text:
                if len(self._error_lines) < _ERROR_LINES_KEPT:
                    self._error_lines.append(text)
                return events
        applied = _APPLIED.match(text)
        if applied:
            events.append(tool("edit", "completed", input=applied["path"]))
        if text.startswith("Tokens:"):
            self._error_kind = None  # an answer came after all
            events.extend(self._answer())
            self._usage(text)
        elif text.startswith("```"):
            self._in_fence = not self._in_fence  # edit blocks are not prose
            if self._in_fence and self._prose and _PATH_LIKE.match(self._prose[-1].strip()):
                self._prose.pop()  # the file name aider prints above an edit block
        elif self._started and not self._in_fence and not _AIDER_STATUS.match(text):
            self._prose.append(line)
        return events

    def _answer(self) -> list[Event]:
        lines = [line for line in self._prose if not _PATH_LIKE.match(line.strip())]
        self._prose = []
        text = "\n".join(lines).strip()
        if not text:
            return []
        self.summary = text
        return [message(text)]

    def _usage(self, text: str) -> None:
        self.stats["turns"] = self.stats.get("turns", 0) + 1
        scale = {"": 1, "k": 1_000, "M": 1_000_000}
        for found in _AIDER_TOKENS.finditer(text):
            name = _AIDER_USAGE[found["what"]]
            count = round(float(found["n"]) * scale[found["unit"]])
            self.stats[name] = self.stats.get(name, 0) + count
        cost = _AIDER_SESSION_COST.search(text)
        if cost:
            self.stats["cost_usd"] = float(cost["usd"])

    def _end_command(self) -> list[Event]:
        if self._command is None:
            return []
        (call_id, command), output = self._command, "\n".join(self._output).strip()
        self._command, self._output, self._output_size = None, [], 0
        return [tool("shell", "completed", call_id=call_id, input=command,
                     output=output or None)]

    def finish(self) -> list[Event]:
        ended = self._end_command()
        if self._error_kind is not None:
            if self._error_kind in _AIDER_EXPLAINED:
                said = self._error_lines[-1]  # aider's explanation
            else:  # litellm's message, wrapped over lines by aider's console
                said = " ".join(line for line in self._error_lines if line)
            said = said.rstrip(".") or self._error_kind
            # Without its last full stop, as the other parsers' (the runner ends the sentence
            # it puts this in when aider exits non-zero).
            self.error = f"aider stopped ({self._error_kind}): {said}"
        return ended


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
