"""What a scripted model plays and what it records, shared by the model API doubles.

A script is a list of `Turn`s: text, `ToolCall`s (whose string inputs may name `{cwd}`, the
working directory the client states in its request), a stop reason, `Usage`; or a `Failure`.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any

CWD_PLACEHOLDER = "{cwd}"
_CWD_PATTERNS = (re.compile(r"Primary working directory: *(\S+)"),
                 re.compile(r"Working directory: *(\S+)"),
                 re.compile(r"<cwd>([^<]+)</cwd>"))  # Codex's environment context


@dataclass(frozen=True)
class Usage:
    """The token counts a turn reports, as the API's `usage` object carries them."""

    input_tokens: int = 10
    output_tokens: int = 5
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0

    def as_json(self) -> dict[str, Any]:
        return {"input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                "cache_creation_input_tokens": self.cache_creation_input_tokens,
                "cache_read_input_tokens": self.cache_read_input_tokens}


@dataclass(frozen=True)
class ToolCall:
    """A tool_use block: the tool's name and its input ({cwd} placeholders allowed)."""

    name: str
    input: dict[str, Any]


@dataclass(frozen=True)
class Failure:
    """A turn that fails: an HTTP error in the provider's shape, or a stream cut mid-message."""

    status: int  # 0: the stream starts and the connection drops half-way
    error_type: str = ""
    message: str = ""
    # Seconds in a `retry-after` header (providers send one with 429 and 529): a client that
    # honours it retries at once with 0 (OpenCode, whose retries cannot be turned off).
    retry_after: int | None = None

    @classmethod
    def overloaded(cls) -> Failure:
        return cls(529, "overloaded_error", "Overloaded")

    @classmethod
    def unauthorized(cls) -> Failure:
        return cls(401, "authentication_error", "invalid x-api-key")

    @classmethod
    def stream_cut(cls) -> Failure:
        return cls(0)


@dataclass(frozen=True)
class Turn:
    """One answer of the model: text, tool calls, a stop reason and usage; or a failure,
    answered `times` times in a row (a CLI retries some errors)."""

    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    stop_reason: str | None = None  # default: tool_use with tool calls, end_turn without
    usage: Usage = field(default_factory=Usage)
    failure: Failure | None = None
    times: int = 1
    # Answered only once the test sets it: a test holds the agent mid-run without sleeping.
    hold: asyncio.Event | None = field(default=None, compare=False)

    @property
    def reason(self) -> str:
        return self.stop_reason or ("tool_use" if self.tool_calls else "end_turn")


@dataclass
class RecordedRequest:
    """One request the double received."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # names in lower case
    body: Any

    @property
    def credential(self) -> str | None:
        """The key the client sent: `x-api-key`, else a bearer token in `authorization`."""
        if "x-api-key" in self.headers:
            return self.headers["x-api-key"]
        scheme, _, token = self.headers.get("authorization", "").partition(" ")
        return token if scheme.lower() == "bearer" and token else None

    @property
    def tool_names(self) -> list[str]:
        """Names of the tools the request offered the model (see `offered_tools`)."""
        return [tool_name(tool) for tool in offered_tools(self.body)]

    @property
    def text(self) -> str:
        """All text of the request's system prompt and messages (Responses: instructions and
        input items), tool results included, for searching."""
        if not isinstance(self.body, dict):
            return ""
        return "\n".join(texts([self.body.get(key) for key in
                                ("system", "messages", "instructions", "input")]))

    @property
    def working_directory(self) -> str | None:
        for pattern in _CWD_PATTERNS:
            if found := pattern.search(self.text):
                return found.group(1)
        return None


def offered_tools(body: Any) -> list[dict[str, Any]]:
    """The tools a request offers: its `tools`, and (Responses) those of `additional_tools`
    input items; the tools of a `namespace` tool stand in its place."""
    if not isinstance(body, dict):
        return []
    found: list[Any] = list(body.get("tools") or [])
    for item in body.get("input") if isinstance(body.get("input"), list) else []:
        if isinstance(item, dict) and item.get("type") == "additional_tools":
            found.extend(item.get("tools") or [])
    flat: list[dict[str, Any]] = []
    while found:
        tool = found.pop(0)
        if isinstance(tool, dict) and tool.get("type") == "namespace":
            found[:0] = [{**t, "namespace": tool.get("name")} for t in tool.get("tools") or []
                         if isinstance(t, dict)]
        elif isinstance(tool, dict):
            flat.append(tool)
    return flat


def tool_name(tool: dict[str, Any]) -> str:
    """A tool's name: `name`, Chat Completions' `function.name`, else (a Responses built-in
    such as `web_search`) its type."""
    function = tool.get("function")
    return str(tool.get("name") or (function.get("name") if isinstance(function, dict) else None)
               or tool.get("type"))


def texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [text for item in value for text in texts(item)]
    if isinstance(value, dict):
        if isinstance(value.get("text"), str):
            return [value["text"]]
        return texts(value.get("content")) + texts(value.get("output"))
    return []


def substitute(value: Any, cwd: str) -> Any:
    if isinstance(value, str):
        return value.replace(CWD_PLACEHOLDER, cwd)
    if isinstance(value, list):
        return [substitute(item, cwd) for item in value]
    if isinstance(value, dict):
        return {key: substitute(item, cwd) for key, item in value.items()}
    return value
