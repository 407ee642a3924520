"""What a scripted model plays and what it records, shared by the model API doubles.

A script is a list of `Turn`s: text, `ToolCall`s (whose string inputs may name `{cwd}`, the
working directory the client states in its request), a stop reason, `Usage`; or a `Failure`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, NoReturn, Self

from aiohttp import web

CWD_PLACEHOLDER = "{cwd}"
EXHAUSTED_TEXT = "(the scripted model has no more turns)"
SIDE_TEXT = "ok"  # the answer to a request outside the agent's loop (titles, summaries)
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
        """The working directory the client names last: a resumed conversation names its
        earlier one first, then the new one (Claude Code's "Environment update")."""
        for pattern in _CWD_PATTERNS:
            if found := pattern.findall(self.text):
                return str(found[-1])
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


class ScriptedServer:
    """What the model API doubles share: the script played turn by turn, every request
    recorded, and the server's life (`start()`/`close()` or `async with`; `url`, `base_url`).
    A subclass gives its routes (`app`) and what the provider's base-URL variable names
    (`url_path`)."""

    url_path = ""  # after the prefix: what the client's base-URL variable names

    def __init__(self, script: list[Turn] | None = None, *, model: str | None = None,
                 prefix: str = "", toolless: bool = False) -> None:
        self.script: list[Turn] = list(script or [])
        # Every request takes a turn, tools or not: a client whose edits are blocks in its
        # text (aider) offers none.
        self.toolless = toolless
        self.model = model
        self.prefix = prefix.rstrip("/")  # where the gateway serves the API ("/openai")
        self.requests: list[RecordedRequest] = []
        self.turns_played = 0  # main-loop requests answered from the script
        self.exhausted = 0  # main-loop requests that came after the script's end
        self.unknown: list[str] = []  # paths the double has no answer for
        self.left = 0  # requests whose client left while their turn was held: not answered
        self.sent: list[dict[str, Any]] = []  # every event and body sent, for shape checks
        self._failures_left: int | None = None
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.base_url = self.url = ""

    def app(self) -> web.Application:
        raise NotImplementedError

    async def start(self) -> Self:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"
        self.url = f"{self.base_url}{self.prefix}{self.url_path}"
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def _record(self, request: web.Request) -> RecordedRequest:
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", errors="replace")
        headers = {name.lower(): value for name, value in request.headers.items()}
        recorded = RecordedRequest(request.method, request.path, dict(request.query),
                                   headers, body)
        self.requests.append(recorded)
        return recorded

    def _next_turn(self) -> Turn:
        """The script's next turn; a failing one is played `times` times before the next."""
        if self.turns_played >= len(self.script):
            self.exhausted += 1
            return Turn(text=EXHAUSTED_TEXT)
        turn = self.script[self.turns_played]
        if turn.failure is not None:
            if self._failures_left is None:
                self._failures_left = turn.times
            self._failures_left -= 1
            if self._failures_left > 0:
                return turn
            self._failures_left = None
        self.turns_played += 1
        return turn

    async def _release(self, request: web.Request, turn: Turn) -> None:
        """Wait until a held turn is let go. A client that left meanwhile is sent nothing (the
        turn is spent all the same: it was asked for)."""
        if turn.hold is None:
            return
        await turn.hold.wait()
        if request.transport is None or request.transport.is_closing():
            self.left += 1
            raise asyncio.CancelledError  # aiohttp closes the request without an answer

    @staticmethod
    def _drop(request: web.Request) -> NoReturn:
        if request.transport is not None:
            request.transport.abort()
        raise asyncio.CancelledError  # aiohttp ends a handler cancelled this way quietly
