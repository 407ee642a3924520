"""A double of the OpenAI Responses and Chat Completions APIs on loopback, playing a script.

Codex talks to `POST /v1/responses` (streaming SSE) through `OPENAI_BASE_URL`; aider and
OpenCode with OpenAI-compatible models talk to `POST /v1/chat/completions`. Each request of
the agent's main loop (one that offers tools) takes the next turn of the script; requests
without tools (side questions, titles) get a short answer and take no turn. Every request is
recorded with its headers and body, and every event or body sent is kept in `sent`.

    script = [Turn(text="Writing it.", tool_calls=[
                  ToolCall("shell", {"command": ["bash", "-lc", "echo hi > new.txt"]})]),
              Turn(text="Done.", usage=Usage(input_tokens=40, cache_read_input_tokens=900))]
    async with OpenAIDouble(script) as model:
        ...  # run the agent with OPENAI_BASE_URL=model.url
    assert model.requests[0].credential == ...

A tool call goes out in the shape the request offered its tool in: a `function_call` with
JSON arguments for a function tool, a `custom_tool_call` with the input's one string (its
`input` key) for a free-form custom tool (Codex's `apply_patch`). `{cwd}` in any string of a
tool call's input becomes the working directory the client named (Codex's environment context
says `<cwd>...</cwd>`).

Usage in OpenAI's terms: `input_tokens` there counts cached input and cache writes too, so a
turn's `Usage(input_tokens=40, cache_read_input_tokens=900, cache_creation_input_tokens=60)`
is sent as 1,000 input tokens of which 900 cached and 60 written to the cache
(`input_tokens_details.cached_tokens` and `.cache_write_tokens`; Chat's
`prompt_tokens_details` the same).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
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
    offered_tools,
    substitute,
    tool_name,
)

__all__ = ["CWD_PLACEHOLDER", "Failure", "OpenAIDouble", "RecordedRequest", "ToolCall", "Turn",
           "Usage", "openai_failure", "quota_failure"]

DEFAULT_MODEL = "gpt-5-codex"
CREATED_AT = 1_767_225_600  # 2026-01-01T00:00:00Z: fixed, so captures compare
QUOTA = "insufficient_quota"

# The shared failures in OpenAI's words: (type, code, message) by HTTP status.
_OPENAI_ERRORS: dict[int, tuple[str, str | None, str]] = {
    401: ("invalid_request_error", "invalid_api_key",
          "Incorrect API key provided. You can find your API key at "
          "https://platform.openai.com/account/api-keys."),
    429: ("rate_limit_error", "rate_limit_exceeded", "Rate limit reached."),
    500: ("server_error", None, "The server had an error while processing your request."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later"),
    529: ("server_error", None, "The engine is currently overloaded, please try again later"),
}


def openai_failure(status: int) -> Failure:
    """A failure with the type and message OpenAI's API gives for `status`."""
    kind, _, text = _OPENAI_ERRORS[status]
    return Failure(status, kind, text)


def quota_failure() -> Failure:
    """OpenAI's 429 for an account out of credit (also what the gateway answers a run whose
    budget is spent): type and code `insufficient_quota`."""
    return Failure(429, QUOTA, "You exceeded your current quota, please check your plan and "
                               "billing details.")


def _sse(event: dict[str, Any]) -> bytes:
    return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()


def _chat_sse(chunk: dict[str, Any] | str) -> bytes:
    return f"data: {chunk if isinstance(chunk, str) else json.dumps(chunk)}\n\n".encode()


def _all_input(usage: Usage) -> int:
    return usage.input_tokens + usage.cache_read_input_tokens + usage.cache_creation_input_tokens


def _cache_details(usage: Usage) -> dict[str, int]:
    return {"cached_tokens": usage.cache_read_input_tokens,
            "cache_write_tokens": usage.cache_creation_input_tokens}


def _halves(text: str) -> list[str]:
    half = len(text) // 2 or len(text)
    return [piece for piece in (text[:half], text[half:]) if piece]


def _tools_by_name(body: Any) -> dict[str, dict[str, Any]]:
    return {tool_name(tool): tool for tool in offered_tools(body)}


class OpenAIDouble(ScriptedServer):
    """OpenAI's Responses and Chat Completions APIs, scripted: `url` is what OPENAI_BASE_URL
    names."""

    url_path = "/v1"

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post(f"{self.prefix}/v1/responses", self._responses)
        app.router.add_post(f"{self.prefix}/v1/chat/completions", self._chat)
        app.router.add_get(f"{self.prefix}/v1/models", self._models)
        app.router.add_route("*", "/{path:.*}", self._unknown)
        return app

    # --- what the agent's main loop saw

    @property
    def main_requests(self) -> list[RecordedRequest]:
        """The Responses and Chat requests that offered tools: the agent loop's turns."""
        paths = {f"{self.prefix}/v1/responses", f"{self.prefix}/v1/chat/completions"}
        return [r for r in self.requests
                if r.path in paths and (self.toolless or r.tool_names)]

    # --- handlers shared by both APIs


    async def _unknown(self, request: web.Request) -> web.Response:
        recorded = await self._record(request)
        self.unknown.append(f"{recorded.method} {recorded.path}")
        return self._error_body(404, "invalid_request_error", "unknown_url",
                                f"Invalid URL ({recorded.method} {recorded.path})")

    async def _models(self, request: web.Request) -> web.Response:
        await self._record(request)
        model = self.model or DEFAULT_MODEL
        body = {"object": "list",
                "data": [{"id": model, "object": "model", "created": CREATED_AT,
                          "owned_by": "agentbot-double"}]}
        self.sent.append({"kind": "models", "body": body})
        return web.json_response(body)

    async def _turn_for(self, request: web.Request, recorded: RecordedRequest) -> Turn:
        if not (self.toolless or recorded.tool_names):
            return Turn(text=SIDE_TEXT, usage=Usage(input_tokens=1, output_tokens=1))
        turn = self._next_turn()
        await self._release(request, turn)
        return turn


    def _failure(self, failure: Failure) -> web.Response:
        _, code, _ = _OPENAI_ERRORS.get(failure.status, ("", None, ""))
        if failure.error_type == QUOTA:
            code = QUOTA
        return self._error_body(failure.status, failure.error_type or "server_error", code,
                                failure.message or "error")

    def _error_body(self, status: int, kind: str, code: str | None, text: str) -> web.Response:
        body = {"error": {"message": text, "type": kind, "param": None, "code": code}}
        self.sent.append({"kind": "error", "body": body})
        return web.json_response(body, status=status,
                                 headers={"x-request-id": f"req_double{next(self._ids):06d}"})

    def _id(self, prefix: str) -> str:
        return f"{prefix}_double{next(self._ids):06d}"

    # --- Responses

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        recorded = await self._record(request)
        body = recorded.body if isinstance(recorded.body, dict) else {}
        turn = await self._turn_for(request, recorded)
        if turn.failure and turn.failure.status:
            return self._failure(turn.failure)
        model = self.model or str(body.get("model") or DEFAULT_MODEL)
        output = self._output_items(turn, _tools_by_name(body), recorded.working_directory or "")
        response = self._response(body, model, output, turn.usage)
        cut = turn.failure is not None
        if not body.get("stream"):
            if cut:
                self._drop(request)
            self.sent.append({"kind": "response", "body": response})
            return web.json_response(response)
        stream = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                             "Cache-Control": "no-cache"})
        await stream.prepare(request)
        for event in self._response_events(response, cut=cut):
            self.sent.append({"kind": "event", "body": event})
            await stream.write(_sse(event))
        if cut:
            # The connection drops with the response half-sent: no response.completed.
            self._drop(request)
        await stream.write_eof()
        return stream

    def _output_items(self, turn: Turn, tools: dict[str, dict[str, Any]], cwd: str
                      ) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        if turn.text:
            items.append({"type": "message", "id": self._id("msg"), "status": "completed",
                          "role": "assistant",
                          "content": [{"type": "output_text", "text": turn.text,
                                       "annotations": [], "logprobs": []}]})
        for call in turn.tool_calls:
            arguments = substitute(call.input, cwd)
            offered = tools.get(call.name, {})
            # A tool offered inside a namespace is called with the namespace named.
            where = {"namespace": offered["namespace"]} if offered.get("namespace") else {}
            if offered.get("type") == "custom":
                items.append({"type": "custom_tool_call", "id": self._id("ctc"),
                              "call_id": self._id("call"), "name": call.name, **where,
                              "input": str(arguments.get("input", "")),
                              "status": "completed"})
            else:
                items.append({"type": "function_call", "id": self._id("fc"),
                              "call_id": self._id("call"), "name": call.name, **where,
                              "arguments": json.dumps(arguments), "status": "completed"})
        return items

    def _response(self, request: dict[str, Any], model: str, output: list[dict[str, Any]],
                  usage: Usage) -> dict[str, Any]:
        return {
            "id": self._id("resp"), "object": "response", "created_at": CREATED_AT,
            "status": "completed", "model": model, "output": output,
            "parallel_tool_calls": bool(request.get("parallel_tool_calls", False)),
            "tool_choice": request.get("tool_choice") or "auto",
            "tools": request.get("tools") or [], "error": None, "incomplete_details": None,
            "instructions": request.get("instructions"), "metadata": {},
            "temperature": None, "top_p": None, "text": {"format": {"type": "text"}},
            "usage": {
                "input_tokens": _all_input(usage),
                "input_tokens_details": _cache_details(usage),
                "output_tokens": usage.output_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": _all_input(usage) + usage.output_tokens},
        }

    def _response_events(self, response: dict[str, Any], *, cut: bool
                         ) -> Iterator[dict[str, Any]]:
        numbers = itertools.count()

        def event(kind: str, **fields: Any) -> dict[str, Any]:
            return {"type": kind, "sequence_number": next(numbers), **fields}

        pending = {**response, "status": "in_progress", "output": [], "usage": None}
        yield event("response.created", response=pending)
        yield event("response.in_progress", response=pending)
        for index, item in enumerate(response["output"]):
            where = {"item_id": item["id"], "output_index": index}
            if item["type"] == "message":
                yield event("response.output_item.added", output_index=index,
                            item={**item, "status": "in_progress", "content": []})
                part = item["content"][0]
                empty = {**part, "text": ""}
                yield event("response.content_part.added", **where, content_index=0,
                            part=empty)
                for piece in _halves(part["text"]):
                    yield event("response.output_text.delta", **where, content_index=0,
                                delta=piece, logprobs=[])
                    if cut:
                        return
                yield event("response.output_text.done", **where, content_index=0,
                            text=part["text"], logprobs=[])
                yield event("response.content_part.done", **where, content_index=0, part=part)
            elif item["type"] == "function_call":
                yield event("response.output_item.added", output_index=index,
                            item={**item, "status": "in_progress", "arguments": ""})
                for piece in _halves(item["arguments"]):
                    yield event("response.function_call_arguments.delta", **where,
                                delta=piece)
                    if cut:
                        return
                yield event("response.function_call_arguments.done", **where,
                            name=item["name"], arguments=item["arguments"])
            else:  # custom_tool_call
                yield event("response.output_item.added", output_index=index,
                            item={**item, "status": "in_progress", "input": ""})
                for piece in _halves(item["input"]):
                    yield event("response.custom_tool_call_input.delta", **where, delta=piece)
                    if cut:
                        return
                yield event("response.custom_tool_call_input.done", **where,
                            input=item["input"])
            yield event("response.output_item.done", output_index=index, item=item)
        if cut:
            return
        yield event("response.completed", response=response)

    # --- Chat Completions

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        recorded = await self._record(request)
        body = recorded.body if isinstance(recorded.body, dict) else {}
        turn = await self._turn_for(request, recorded)
        if turn.failure and turn.failure.status:
            return self._failure(turn.failure)
        model = self.model or str(body.get("model") or DEFAULT_MODEL)
        completion = self._completion(turn, model, recorded.working_directory or "")
        cut = turn.failure is not None
        if not body.get("stream"):
            if cut:
                self._drop(request)
            self.sent.append({"kind": "completion", "body": completion})
            return web.json_response(completion)
        options = body.get("stream_options")
        with_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        stream = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                             "Cache-Control": "no-cache"})
        await stream.prepare(request)
        for chunk in self._chunks(completion, with_usage=with_usage, cut=cut):
            self.sent.append({"kind": "chunk", "body": chunk})
            await stream.write(_chat_sse(chunk))
        if cut:
            self._drop(request)
        await stream.write(_chat_sse("[DONE]"))
        await stream.write_eof()
        return stream

    def _completion(self, turn: Turn, model: str, cwd: str) -> dict[str, Any]:
        message: dict[str, Any] = {"role": "assistant", "content": turn.text or None}
        if turn.tool_calls:
            message["tool_calls"] = [
                {"id": self._id("call"), "type": "function",
                 "function": {"name": call.name,
                              "arguments": json.dumps(substitute(call.input, cwd))}}
                for call in turn.tool_calls]
        finish = {"end_turn": "stop", "tool_use": "tool_calls",
                  "max_tokens": "length"}.get(turn.reason, turn.reason)
        usage = turn.usage
        prompt = _all_input(usage)
        return {
            "id": self._id("chatcmpl"), "object": "chat.completion", "created": CREATED_AT,
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish,
                         "logprobs": None}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": usage.output_tokens,
                      "total_tokens": prompt + usage.output_tokens,
                      "prompt_tokens_details": _cache_details(usage)},
        }

    @staticmethod
    def _chunks(completion: dict[str, Any], *, with_usage: bool, cut: bool
                ) -> Iterator[dict[str, Any]]:
        head = {key: completion[key] for key in ("id", "created", "model")}
        head["object"] = "chat.completion.chunk"

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish,
                                         "logprobs": None}]}

        [choice] = completion["choices"]
        message = choice["message"]
        yield chunk({"role": "assistant", "content": ""})
        for piece in _halves(message["content"] or ""):
            yield chunk({"content": piece})
            if cut:
                return
        for index, call in enumerate(message.get("tool_calls", [])):
            arguments = call["function"]["arguments"]
            yield chunk({"tool_calls": [{"index": index, "id": call["id"], "type": "function",
                                         "function": {"name": call["function"]["name"],
                                                      "arguments": ""}}]})
            for piece in _halves(arguments):
                yield chunk({"tool_calls": [{"index": index,
                                             "function": {"arguments": piece}}]})
                if cut:
                    return
        yield chunk({}, choice["finish_reason"])
        if with_usage:
            yield {**head, "choices": [], "usage": completion["usage"]}
