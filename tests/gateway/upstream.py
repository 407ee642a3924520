"""A double of the Anthropic and OpenAI APIs that answers from a script and records requests."""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from multidict import CIMultiDictProxy

ANTHROPIC_MODEL = "claude-sonnet-4-5-20250929"
OPENAI_MODEL = "gpt-4.1-2025-04-14"
SSE_TYPE = "text/event-stream; charset=utf-8"
JSON_TYPE = "application/json"

# An SSE event: its name (None for none) and its data (JSON-encoded unless a str).
Event = tuple[str | None, Any]


@dataclass
class Seen:
    """One request as the upstream received it."""

    method: str
    path_qs: str
    headers: CIMultiDictProxy[str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    """One scripted answer: its body goes out in `chunks`, each flushed on its own."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    chunks: list[bytes] = field(default_factory=list)
    streamed: bool = True  # chunked, as SSE comes; else one body with Content-Length
    cut_after: int | None = None  # close the connection after this many chunks
    gate: asyncio.Event | None = None  # wait for it after `gate_after` chunks
    gate_after: int = 1
    interval: float = 0.0  # seconds between chunks


# A reply, or a function of the request that makes one (to answer as the real API would).
Script = Reply | Callable[[Seen], Reply]


class Upstream:
    """The double: an aiohttp app answering every path from its script, in order."""

    def __init__(self) -> None:
        self.seen: list[Seen] = []
        self.script: deque[Script] = deque()
        self.finished = asyncio.Event()  # set when a streamed reply has sent its last chunk
        self.app = web.Application(client_max_size=64 << 20)
        self.app.router.add_route("*", "/{tail:.*}", self._handle)

    def answer(self, *replies: Script) -> None:
        self.script.extend(replies)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        # raw_path: the target exactly as sent (path_qs would normalise its escapes).
        seen = Seen(request.method, request.raw_path, request.headers, await request.read())
        self.seen.append(seen)
        script = self.script.popleft() if self.script else Reply(500, chunks=[b"unscripted"])
        reply = script(seen) if callable(script) else script
        if not reply.streamed:
            return web.Response(status=reply.status, headers=reply.headers,
                                body=b"".join(reply.chunks))
        response = web.StreamResponse(status=reply.status, headers=reply.headers)
        await response.prepare(request)
        for index, chunk in enumerate(reply.chunks):
            if reply.gate is not None and index == reply.gate_after:
                await reply.gate.wait()
            if reply.cut_after is not None and index == reply.cut_after:
                assert request.transport is not None
                request.transport.close()
                return response
            await response.write(chunk)
            if reply.interval:
                await asyncio.sleep(reply.interval)
        self.finished.set()
        await response.write_eof()
        return response


def sse(events: Iterable[Event], newline: str = "\n") -> list[bytes]:
    """SSE frames, one per event; data that is not a str is sent as compact JSON."""
    frames = []
    for name, data in events:
        text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
        lines = [f"event: {name}"] if name else []
        lines.append(f"data: {text}")
        frames.append((newline.join(lines) + newline + newline).encode())
    return frames


# --- Anthropic Messages -------------------------------------------------------------------


def anthropic_usage(input_tokens: int, output_tokens: int, cache_read: int = 0,
                    cache_write: int = 0) -> dict[str, Any]:
    return {"input_tokens": input_tokens, "cache_creation_input_tokens": cache_write,
            "cache_read_input_tokens": cache_read,
            "cache_creation": {"ephemeral_5m_input_tokens": cache_write,
                               "ephemeral_1h_input_tokens": 0},
            "output_tokens": output_tokens, "service_tier": "standard"}


def anthropic_message(text: str, input_tokens: int = 12, output_tokens: int = 6,
                      cache_read: int = 0, cache_write: int = 0) -> dict[str, Any]:
    return {"id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant",
            "model": ANTHROPIC_MODEL, "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn", "stop_sequence": None,
            "usage": anthropic_usage(input_tokens, output_tokens, cache_read, cache_write)}


def anthropic_events(parts: list[str], input_tokens: int = 25, output_tokens: int = 15,
                     cache_read: int = 0, cache_write: int = 0) -> list[Event]:
    """A Messages stream as the API sends it, text in `parts`."""
    start: dict[str, Any] = {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant",
        "content": [], "model": ANTHROPIC_MODEL, "stop_reason": None, "stop_sequence": None,
        "usage": anthropic_usage(input_tokens, 1, cache_read, cache_write)}
    events: list[Event] = [
        ("message_start", {"type": "message_start", "message": start}),
        ("content_block_start", {"type": "content_block_start", "index": 0,
                                 "content_block": {"type": "text", "text": ""}}),
        ("ping", {"type": "ping"}),
    ]
    events += [("content_block_delta", {"type": "content_block_delta", "index": 0,
                                        "delta": {"type": "text_delta", "text": part}})
               for part in parts]
    events += [
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta",
                           "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                           "usage": {"output_tokens": output_tokens}}),
        ("message_stop", {"type": "message_stop"}),
    ]
    return events


def anthropic_error(error_type: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type, "message": message},
            "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy"}


# --- OpenAI Responses ---------------------------------------------------------------------


def responses_usage(input_tokens: int, output_tokens: int, cached: int = 0) -> dict[str, Any]:
    return {"input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + output_tokens}


def _response(status: str, output: list[Any], usage: dict[str, Any] | None) -> dict[str, Any]:
    return {"id": "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b", "object": "response",
            "created_at": 1741476542, "status": status, "error": None,
            "incomplete_details": None, "instructions": None, "max_output_tokens": None,
            "model": OPENAI_MODEL, "output": output, "parallel_tool_calls": True,
            "previous_response_id": None, "reasoning": {"effort": None, "summary": None},
            "store": True, "temperature": 1.0, "text": {"format": {"type": "text"}},
            "tool_choice": "auto", "tools": [], "top_p": 1.0, "truncation": "disabled",
            "usage": usage, "user": None, "metadata": {}}


def responses_events(parts: list[str], input_tokens: int = 37, output_tokens: int = 11,
                     cached: int = 0) -> list[Event]:
    """A Responses stream as the API sends it, text in `parts`."""
    item_id = "msg_67ccd2bf17f0819081ff3bb2cf6508e60bb6a6b452d3795b"
    text = "".join(parts)
    part_done = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    item_done = {"id": item_id, "type": "message", "status": "completed",
                 "role": "assistant", "content": [part_done]}
    where = {"item_id": item_id, "output_index": 0, "content_index": 0}
    bodies: list[dict[str, Any]] = [
        {"type": "response.created", "response": _response("in_progress", [], None)},
        {"type": "response.in_progress", "response": _response("in_progress", [], None)},
        {"type": "response.output_item.added", "output_index": 0,
         "item": {"id": item_id, "type": "message", "status": "in_progress",
                  "role": "assistant", "content": []}},
        {"type": "response.content_part.added", **where,
         "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []}},
        *({"type": "response.output_text.delta", **where, "delta": part, "logprobs": []}
          for part in parts),
        {"type": "response.output_text.done", **where, "text": text, "logprobs": []},
        {"type": "response.content_part.done", **where, "part": part_done},
        {"type": "response.output_item.done", "output_index": 0, "item": item_done},
        {"type": "response.completed",
         "response": _response("completed", [item_done],
                               responses_usage(input_tokens, output_tokens, cached))},
    ]
    return [(body["type"], {**body, "sequence_number": number})
            for number, body in enumerate(bodies)]


# --- OpenAI Chat Completions --------------------------------------------------------------


def chat_usage(prompt_tokens: int, completion_tokens: int, cached: int = 0) -> dict[str, Any]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0,
                                          "rejected_prediction_tokens": 0}}


def chat_events(parts: list[str], usage: dict[str, Any] | None) -> list[Event]:
    """A Chat Completions stream as the API sends it; the usage chunk only when `usage`."""
    with_usage = usage is not None

    def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT", "object": "chat.completion.chunk",
            "created": 1741569952, "model": "gpt-4o-mini-2024-07-18",
            "service_tier": "default", "system_fingerprint": "fp_06737a9306",
            "choices": [{"index": 0, "delta": delta, "logprobs": None,
                         "finish_reason": finish}]}
        if with_usage:
            body["usage"] = None
        return body

    events: list[Event] = [
        (None, chunk({"role": "assistant", "content": "", "refusal": None}, None))]
    events += [(None, chunk({"content": part}, None)) for part in parts]
    events.append((None, chunk({}, "stop")))
    if usage is not None:
        last = chunk({}, None)
        last["choices"] = []
        last["usage"] = usage
        events.append((None, last))
    events.append((None, "[DONE]"))
    return events


def chat_completion(text: str, usage: dict[str, Any]) -> dict[str, Any]:
    return {"id": "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG", "object": "chat.completion",
            "created": 1741570283, "model": "gpt-4o-mini-2024-07-18",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text,
                                                 "refusal": None, "annotations": []},
                         "logprobs": None, "finish_reason": "stop"}],
            "usage": usage, "service_tier": "default", "system_fingerprint": "fp_06737a9306"}


def openai_error(message: str, error_type: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": error_type, "param": None, "code": code}}


# --- Replies ------------------------------------------------------------------------------


def sse_reply(events: Iterable[Event], **options: Any) -> Reply:
    headers = {"Content-Type": SSE_TYPE, "Cache-Control": "no-cache",
               "request-id": "req_011CSHoEeqs5C35K2UUqR7Fy"}
    return Reply(headers=headers, chunks=sse(events), **options)


def json_reply(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    return Reply(status=status, headers={"Content-Type": JSON_TYPE, **(headers or {})},
                 chunks=[json.dumps(body).encode()], streamed=False)
