"""The Anthropic double speaks the published API: every SSE event and JSON body it sends
parses with the `anthropic` SDK's typed models, and the SDK's own client reads it back."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import anthropic
import pytest
from anthropic.types import (
    ErrorResponse,
    Message,
    MessageTokensCount,
    RawMessageStreamEvent,
)
from pydantic import TypeAdapter

from tests.fakes.model_anthropic import AnthropicDouble, Failure, ToolCall, Turn, Usage
from tests.flow.harness import until

STREAM_EVENT: TypeAdapter[Any] = TypeAdapter(RawMessageStreamEvent)
TOOLS = [{"name": "Write", "description": "write a file",
          "input_schema": {"type": "object", "properties": {}}}]
CWD_SYSTEM = "# Environment\n - Primary working directory: /work/space\n"


def script() -> list[Turn]:
    return [
        Turn(text="Writing it.", tool_calls=[
            ToolCall("Write", {"file_path": "{cwd}/a.txt", "content": "x"}),
            ToolCall("Write", {"file_path": "{cwd}/b.txt", "content": "y"})],
            usage=Usage(input_tokens=12, output_tokens=7, cache_creation_input_tokens=3,
                        cache_read_input_tokens=40)),
        Turn(text="Done.", stop_reason="end_turn"),
        Turn(failure=Failure.overloaded()),
        Turn(failure=Failure.unauthorized()),
        Turn(text="never finished", failure=Failure.stream_cut()),
    ]


def request(stream: bool) -> dict[str, Any]:
    return {"model": "claude-test", "max_tokens": 100, "stream": stream, "tools": TOOLS,
            "system": CWD_SYSTEM, "messages": [{"role": "user", "content": "go"}]}


def parse_sse(text: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for frame in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in frame.splitlines())
        events.append((fields["event"], json.loads(fields["data"])))
    return events


async def test_everything_sent_parses_with_the_sdks_types() -> None:
    async with AnthropicDouble(script()) as model, aiohttp.ClientSession() as http:
        async with http.post(f"{model.url}/v1/messages", json=request(True)) as response:
            assert response.headers["Content-Type"].startswith("text/event-stream")
            events = parse_sse(await response.text())
        async with http.post(f"{model.url}/v1/messages", json=request(False)) as response:
            Message.model_validate(await response.json())
        for status in (529, 401):
            async with http.post(f"{model.url}/v1/messages", json=request(True)) as response:
                assert response.status == status
                ErrorResponse.model_validate(await response.json())
        async with http.post(f"{model.url}/v1/messages/count_tokens",
                             json=request(False)) as response:
            MessageTokensCount.model_validate(await response.json())
        with pytest.raises(aiohttp.ClientPayloadError):
            async with http.post(f"{model.url}/v1/messages", json=request(True)) as response:
                await response.read()

    for name, data in events:
        assert name == data["type"]
    # Everything, cut stream included, against the published types. The SDK's stream reader
    # skips `ping` (keep-alive) before any model; its whole shape is {"type": "ping"}.
    for sent in model.sent:
        if sent["kind"] == "event" and sent["body"]["type"] == "ping":
            assert sent["body"] == {"type": "ping"}
        elif sent["kind"] == "event":
            STREAM_EVENT.validate_python(sent["body"])
        elif sent["kind"] == "message":
            Message.model_validate(sent["body"])
        elif sent["kind"] == "error":
            ErrorResponse.model_validate(sent["body"])
        else:
            MessageTokensCount.model_validate(sent["body"])
    assert [name for name, _ in events] == [
        "message_start", "ping",
        "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
        "message_delta", "message_stop"]


async def test_the_sdk_client_reads_a_streamed_turn_whole() -> None:
    async with AnthropicDouble([script()[0], Turn(failure=Failure.overloaded())]) as model:
        client = anthropic.AsyncAnthropic(base_url=model.url, api_key="sk-test-double",
                                          max_retries=0)
        async with client.messages.stream(
                model="claude-test", max_tokens=100, system=CWD_SYSTEM,
                tools=TOOLS,  # type: ignore[arg-type]
                messages=[{"role": "user", "content": "go"}]) as stream:
            message = await stream.get_final_message()
        with pytest.raises(anthropic.OverloadedError):
            await client.messages.create(model="claude-test", max_tokens=10, tools=TOOLS,  # type: ignore[arg-type]
                                         messages=[{"role": "user", "content": "go"}])
        await client.close()

    assert message.stop_reason == "tool_use"
    assert [block.type for block in message.content] == ["text", "tool_use", "tool_use"]
    assert message.content[1].input == {"file_path": "/work/space/a.txt", "content": "x"}  # type: ignore[union-attr]
    assert message.usage.cache_read_input_tokens == 40
    assert message.usage.output_tokens == 7
    [recorded] = [r for r in model.requests if r.path == "/v1/messages"][:1]
    # This SDK sends its key as a bearer token; Claude Code sends x-api-key.
    assert recorded.credential == "sk-test-double"
    assert recorded.working_directory == "/work/space"


async def test_a_client_that_left_during_a_held_turn_is_not_answered() -> None:
    """Nothing is sent to a client that left while its turn was held (the turn is spent: it
    was asked for), and the next request gets the next turn."""
    held = asyncio.Event()
    async with AnthropicDouble([Turn(text="Held back.", hold=held), Turn(text="Next.")]
                               ) as model, aiohttp.ClientSession() as http:
        asking = asyncio.create_task(http.post(f"{model.url}/v1/messages", json=request(False)))

        async def seen() -> bool:
            return len(model.requests) == 1

        await until(seen, 5, what="the request at the double")
        asking.cancel()  # the client gives up and closes its connection
        with pytest.raises(asyncio.CancelledError):
            await asking
        await asyncio.sleep(0.1)  # the server sees the connection close
        held.set()

        async def noticed() -> bool:
            return model.left == 1

        await until(noticed, 5, what="the double noticing the client left")
        assert model.sent == [] and model.turns_played == 1
        async with http.post(f"{model.url}/v1/messages", json=request(False)) as response:
            answer = await response.json()

    assert answer["content"][0]["text"] == "Next."
    assert [sent["body"]["content"][0]["text"] for sent in model.sent] == ["Next."]
    assert model.turns_played == 2 and model.exhausted == 0 and model.left == 1
