"""A double of the Anthropic Messages API on loopback that plays a script of model turns.

Claude Code (and any other client of `POST /v1/messages`) talks to it through
`ANTHROPIC_BASE_URL`. Each request of the agent's main loop (one that offers tools) takes the
next turn of the script; requests without tools (the CLI's side questions) get a short answer
and take no turn. Every request is recorded with its headers and body.

    script = [Turn(text="Writing it.", tool_calls=[
                  ToolCall("Write", {"file_path": "{cwd}/new.txt", "content": "hi\\n"})]),
              Turn(text="Done.", usage=Usage(input_tokens=40, cache_read_input_tokens=900))]
    async with AnthropicDouble(script) as model:
        ...  # run the agent with ANTHROPIC_BASE_URL=model.url
    assert model.requests[0].headers["x-api-key"] == ...

`{cwd}` in any string of a tool call's input becomes the working directory the client named
in its request (Claude Code's environment section says "Primary working directory: ...").
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from tests.fakes.model_script import (
    CWD_PLACEHOLDER,
    SIDE_TEXT,
    Failure,
    RecordedRequest,
    ScriptedServer,
    ToolCall,
    Turn,
    Usage,
    substitute,
)

__all__ = ["CWD_PLACEHOLDER", "AnthropicDouble", "Failure", "RecordedRequest", "ToolCall",
           "Turn", "Usage"]

DEFAULT_MODEL = "claude-sonnet-4-5"


def _sse(event: dict[str, Any]) -> bytes:
    return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()


class AnthropicDouble(ScriptedServer):
    """The Anthropic Messages API, scripted: `url` is what ANTHROPIC_BASE_URL names."""

    url_path = ""

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post(f"{self.prefix}/v1/messages", self._messages)
        app.router.add_post(f"{self.prefix}/v1/messages/count_tokens", self._count_tokens)
        app.router.add_get(f"{self.prefix}/v1/models", self._models)
        app.router.add_route("*", f"{self.prefix}/api/hello", self._hello)
        app.router.add_route("*", "/{path:.*}", self._unknown)
        return app

    # --- what the agent's main loop saw

    @property
    def main_requests(self) -> list[RecordedRequest]:
        """The Messages requests that offered tools: the agent loop's turns."""
        return [r for r in self.requests
                if r.path == f"{self.prefix}/v1/messages" and (self.toolless or r.tool_names)]

    # --- handlers


    async def _hello(self, request: web.Request) -> web.Response:
        await self._record(request)  # Claude Code's connectivity probe at start-up
        return web.Response(status=200)

    async def _unknown(self, request: web.Request) -> web.Response:
        recorded = await self._record(request)
        self.unknown.append(f"{recorded.method} {recorded.path}")
        return self._error(404, "not_found_error", f"{recorded.path} is not in the double")

    async def _models(self, request: web.Request) -> web.Response:
        await self._record(request)
        model = self.model or DEFAULT_MODEL
        body = {"data": [{"type": "model", "id": model, "display_name": model,
                          "created_at": "2025-01-01T00:00:00Z"}],
                "has_more": False, "first_id": model, "last_id": model}
        return web.json_response(body)

    async def _count_tokens(self, request: web.Request) -> web.Response:
        recorded = await self._record(request)
        body = {"input_tokens": max(1, len(json.dumps(recorded.body)) // 4)}
        self.sent.append({"kind": "count_tokens", "body": body})
        return web.json_response(body)

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        recorded = await self._record(request)
        body = recorded.body if isinstance(recorded.body, dict) else {}
        if not (self.toolless or recorded.tool_names):
            turn = Turn(text=SIDE_TEXT, usage=Usage(input_tokens=1, output_tokens=1))
        else:
            turn = self._next_turn()
            await self._release(request, turn)
        if turn.failure and turn.failure.status:
            return self._error(turn.failure.status, turn.failure.error_type,
                               turn.failure.message, retry_after=turn.failure.retry_after)
        cwd = recorded.working_directory or ""
        model = self.model or str(body.get("model") or DEFAULT_MODEL)
        message = self._message(turn, model, cwd)
        if not body.get("stream"):
            if turn.failure is not None:
                self._drop(request)  # a cut turn cuts the non-streaming retry as well
            self.sent.append({"kind": "message", "body": message})
            return web.json_response(message)
        return await self._stream(request, message, cut=turn.failure is not None)


    def _error(self, status: int, kind: str, text: str, *, retry_after: int | None = None
               ) -> web.Response:
        body = {"type": "error", "error": {"type": kind, "message": text},
                "request_id": f"req_double{next(self._ids):06d}"}
        self.sent.append({"kind": "error", "body": body})
        headers = {"retry-after": str(retry_after)} if retry_after is not None else None
        return web.json_response(body, status=status, headers=headers)

    def _message(self, turn: Turn, model: str, cwd: str) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        if turn.text:
            content.append({"type": "text", "text": turn.text})
        for call in turn.tool_calls:
            content.append({"type": "tool_use", "id": f"toolu_double{next(self._ids):06d}",
                            "name": call.name, "input": substitute(call.input, cwd)})
        return {"id": f"msg_double{next(self._ids):06d}", "type": "message",
                "role": "assistant", "model": model, "content": content,
                "stop_reason": turn.reason, "stop_sequence": None,
                "usage": turn.usage.as_json()}

    async def _stream(self, request: web.Request, message: dict[str, Any], *, cut: bool
                      ) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                               "Cache-Control": "no-cache"})
        await response.prepare(request)
        async for event in self._events(message, cut=cut):
            self.sent.append({"kind": "event", "body": event})
            await response.write(_sse(event))
        if cut:
            # The connection drops with the message half-sent: no message_stop, no final chunk.
            self._drop(request)
        await response.write_eof()
        return response

    async def _events(self, message: dict[str, Any], *, cut: bool
                      ) -> AsyncIterator[dict[str, Any]]:
        usage = message["usage"]
        start = {**message, "content": [], "stop_reason": None,
                 "usage": {**usage, "output_tokens": 1}}
        yield {"type": "message_start", "message": start}
        yield {"type": "ping"}
        for index, block in enumerate(message["content"]):
            if block["type"] == "text":
                yield {"type": "content_block_start", "index": index,
                       "content_block": {"type": "text", "text": ""}}
                text = block["text"]
                half = len(text) // 2 or len(text)
                for piece in (text[:half], text[half:]):
                    if piece:
                        yield {"type": "content_block_delta", "index": index,
                               "delta": {"type": "text_delta", "text": piece}}
                    if cut:
                        return
            else:
                yield {"type": "content_block_start", "index": index,
                       "content_block": {**block, "input": {}}}
                arguments = json.dumps(block["input"])
                half = len(arguments) // 2
                for piece in (arguments[:half], arguments[half:]):
                    yield {"type": "content_block_delta", "index": index,
                           "delta": {"type": "input_json_delta", "partial_json": piece}}
                    if cut:
                        return
            yield {"type": "content_block_stop", "index": index}
        if cut:
            return
        yield {"type": "message_delta",
               "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
               "usage": usage}
        yield {"type": "message_stop"}
