"""The OpenAI double speaks the published API: every SSE event and JSON body it sends parses
with the `openai` SDK's typed models, and the SDK's own client reads it back."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import openai
import pytest
from openai.types import Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response, ResponseStreamEvent
from openai.types.shared import ErrorObject
from pydantic import TypeAdapter

from tests.fakes.model_openai import (
    Failure,
    OpenAIDouble,
    ToolCall,
    Turn,
    Usage,
    openai_failure,
)
from tests.flow.harness import until

STREAM_EVENT: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
FUNCTION = {"type": "function", "name": "exec_command", "description": "run a command",
            "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}},
            "strict": False}
PATCH = {"type": "custom", "name": "apply_patch", "description": "edit files"}
CHAT_TOOLS = [{"type": "function", "function": {"name": "write", "description": "write",
                                                "parameters": {"type": "object"}}}]
CONTEXT = "<environment_context>\n  <cwd>/work/space</cwd>\n</environment_context>"


def script() -> list[Turn]:
    return [
        Turn(text="Writing it.", tool_calls=[
            ToolCall("exec_command", {"cmd": "ls {cwd}"}),
            ToolCall("apply_patch", {"input": "*** Begin Patch\n*** Add File: {cwd}/a\n+x\n"
                                              "*** End Patch\n"})],
            usage=Usage(input_tokens=12, output_tokens=7, cache_read_input_tokens=40)),
        Turn(text="Done."),
        Turn(failure=openai_failure(503)),
        Turn(failure=openai_failure(401)),
        Turn(text="never finished", failure=Failure.stream_cut()),
    ]


def responses_request(stream: bool, *, namespaced: bool = False) -> dict[str, Any]:
    """A request as Codex sends one: tools in `tools`, or (code mode) in a namespace of an
    `additional_tools` input item."""
    context = {"type": "message", "role": "user",
               "content": [{"type": "input_text", "text": CONTEXT}]}
    body: dict[str, Any] = {"model": "gpt-test", "stream": stream, "store": False,
                            "instructions": "Be brief.", "input": [context]}
    if namespaced:
        body["input"].insert(0, {"type": "additional_tools", "role": "developer", "tools": [
            {"type": "namespace", "name": "functions", "tools": [FUNCTION, PATCH]}]})
    else:
        body["tools"] = [FUNCTION, PATCH]
    return body


def chat_request(stream: bool) -> dict[str, Any]:
    return {"model": "gpt-test", "stream": stream, "stream_options": {"include_usage": True},
            "tools": CHAT_TOOLS,
            "messages": [{"role": "system", "content": "Working directory: /work/space"},
                         {"role": "user", "content": "go"}]}


def parse_sse(text: str) -> list[dict[str, Any]]:
    frames = []
    for frame in text.strip().split("\n\n"):
        fields = dict(line.split(": ", 1) for line in frame.splitlines())
        frames.append(fields)
    return frames


async def test_everything_sent_on_the_responses_api_parses_with_the_sdks_types() -> None:
    async with OpenAIDouble(script()) as model, aiohttp.ClientSession() as http:
        async with http.post(f"{model.url}/responses", json=responses_request(True)) as answer:
            assert answer.headers["Content-Type"].startswith("text/event-stream")
            frames = parse_sse(await answer.text())
        async with http.post(f"{model.url}/responses", json=responses_request(False)) as answer:
            Response.model_validate(await answer.json())
        for status in (503, 401):
            async with http.post(f"{model.url}/responses",
                                 json=responses_request(True)) as answer:
                assert answer.status == status
                ErrorObject.model_validate((await answer.json())["error"])
        with pytest.raises(aiohttp.ClientPayloadError):
            async with http.post(f"{model.url}/responses",
                                 json=responses_request(True)) as answer:
                await answer.read()
        async with http.get(f"{model.url}/models") as answer:
            [listed] = (await answer.json())["data"]
            Model.model_validate(listed)

    events = [json.loads(frame["data"]) for frame in frames]
    assert [frame["event"] for frame in frames] == [event["type"] for event in events]
    # Everything, the cut stream included, against the published types.
    for sent in model.sent:
        if sent["kind"] == "event":
            STREAM_EVENT.validate_python(sent["body"])
        elif sent["kind"] == "response":
            Response.model_validate(sent["body"])
        elif sent["kind"] == "error":
            ErrorObject.model_validate(sent["body"]["error"])
        else:
            assert sent["kind"] == "models"
    assert [event["type"] for event in events] == [
        "response.created", "response.in_progress",
        "response.output_item.added", "response.content_part.added",
        "response.output_text.delta", "response.output_text.delta",
        "response.output_text.done", "response.content_part.done", "response.output_item.done",
        "response.output_item.added", "response.function_call_arguments.delta",
        "response.function_call_arguments.delta", "response.function_call_arguments.done",
        "response.output_item.done",
        "response.output_item.added", "response.custom_tool_call_input.delta",
        "response.custom_tool_call_input.delta", "response.custom_tool_call_input.done",
        "response.output_item.done",
        "response.completed"]
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    done = Response.model_validate(events[-1]["response"])
    # The function tool got JSON arguments, the custom one its free-form input; both with
    # the working directory the request named.
    assert [item.type for item in done.output] == ["message", "function_call",
                                                   "custom_tool_call"]
    assert json.loads(done.output[1].arguments) == {"cmd": "ls /work/space"}  # type: ignore[union-attr]
    assert done.output[2].input.startswith("*** Begin Patch\n*** Add File: /work/space/a\n")  # type: ignore[union-attr]
    assert done.usage is not None
    assert (done.usage.input_tokens, done.usage.input_tokens_details.cached_tokens,
            done.usage.output_tokens) == (52, 40, 7)
    # The cut stream stopped half-way through the message's text.
    cut = [sent["body"]["type"] for sent in model.sent if sent["kind"] == "event"][-5:]
    assert cut == ["response.created", "response.in_progress", "response.output_item.added",
                   "response.content_part.added", "response.output_text.delta"]


async def test_tools_in_a_namespace_are_called_with_it() -> None:
    """Codex's code mode offers its tools in an `additional_tools` input item's namespace."""
    body = responses_request(False, namespaced=True)
    async with OpenAIDouble(script()[:1]) as model, aiohttp.ClientSession() as http, \
            http.post(f"{model.url}/responses", json=body) as answer:
        response = Response.model_validate(await answer.json())

    [recorded] = model.main_requests
    assert recorded.tool_names == ["exec_command", "apply_patch"]
    assert [(item.type, getattr(item, "namespace", None)) for item in response.output] == [
        ("message", None), ("function_call", "functions"), ("custom_tool_call", "functions")]
    assert model.turns_played == 1


async def test_a_request_offering_no_tools_takes_no_turn() -> None:
    async with OpenAIDouble(script()) as model, aiohttp.ClientSession() as http:
        body = {**responses_request(False), "tools": []}
        async with http.post(f"{model.url}/responses", json=body) as answer:
            side = Response.model_validate(await answer.json())

    assert side.output_text == "ok"
    assert model.turns_played == 0 and model.main_requests == []


async def test_everything_sent_on_chat_completions_parses_with_the_sdks_types() -> None:
    async with OpenAIDouble(script()) as model, aiohttp.ClientSession() as http:
        async with http.post(f"{model.url}/chat/completions", json=chat_request(True)) as answer:
            frames = parse_sse(await answer.text())
        async with http.post(f"{model.url}/chat/completions",
                             json=chat_request(False)) as answer:
            completion = ChatCompletion.model_validate(await answer.json())
        async with http.post(f"{model.url}/chat/completions", json=chat_request(True)) as answer:
            assert answer.status == 503
            ErrorObject.model_validate((await answer.json())["error"])

    assert frames[-1] == {"data": "[DONE]"}
    chunks = [ChatCompletionChunk.model_validate_json(frame["data"]) for frame in frames[:-1]]
    for sent in model.sent:
        if sent["kind"] == "chunk":
            ChatCompletionChunk.model_validate(sent["body"])
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    arguments = "".join(call.function.arguments or "" for c in chunks if c.choices
                        for call in c.choices[0].delta.tool_calls or [] if call.function)
    assert text == "Writing it."
    # Two calls' arguments, one after the other; the write's {cwd} filled in.
    assert arguments == json.dumps({"cmd": "ls /work/space"}) + json.dumps(
        {"input": "*** Begin Patch\n*** Add File: /work/space/a\n+x\n*** End Patch\n"})
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == 52
    assert completion.choices[0].finish_reason == "stop"
    assert completion.choices[0].message.content == "Done."


async def test_the_sdk_client_reads_the_doubles_answers() -> None:
    turns = [*script()[:1], Turn(text="Fine.", usage=Usage(input_tokens=3, output_tokens=2)),
             Turn(failure=openai_failure(503)), Turn(failure=openai_failure(401))]
    async with OpenAIDouble(turns) as model:
        client = openai.AsyncOpenAI(base_url=model.url, api_key="sk-test-double", max_retries=0)
        async with client.responses.stream(
                model="gpt-test", instructions="Be brief.",
                input=[{"role": "user", "content": CONTEXT}],
                tools=[FUNCTION, PATCH]) as stream:  # type: ignore[list-item]
            response = await stream.get_final_response()
        chat = await client.chat.completions.create(
            model="gpt-test", tools=CHAT_TOOLS,  # type: ignore[arg-type]
            messages=[{"role": "user", "content": "go"}])
        with pytest.raises(openai.InternalServerError):
            await client.responses.create(model="gpt-test", input="go",
                                          tools=[FUNCTION])  # type: ignore[list-item]
        with pytest.raises(openai.AuthenticationError) as refused:
            await client.responses.create(model="gpt-test", input="go",
                                          tools=[FUNCTION])  # type: ignore[list-item]
        await client.close()

    assert response.output_text == "Writing it."
    assert [item.type for item in response.output] == ["message", "function_call",
                                                       "custom_tool_call"]
    assert chat.choices[0].message.content == "Fine."
    assert refused.value.code == "invalid_api_key"
    assert {r.credential for r in model.requests} == {"sk-test-double"}
    assert model.requests[0].working_directory == "/work/space"


async def test_a_client_that_left_during_a_held_turn_is_not_answered() -> None:
    """As the Anthropic double: nothing is sent to a client that left while its turn was
    held, and the next request gets the next turn."""
    held = asyncio.Event()
    script = [Turn(text="Held back.", hold=held), Turn(text="Next.")]
    async with OpenAIDouble(script) as model, aiohttp.ClientSession() as http:
        asking = asyncio.create_task(
            http.post(f"{model.url}/responses", json=responses_request(False)))

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
        async with http.post(f"{model.url}/responses", json=responses_request(False)) as answer:
            body = Response.model_validate(await answer.json())

    assert body.output_text == "Next."
    assert model.turns_played == 2 and model.left == 1
