"""What the model doubles do for OpenCode and aider: a `retry-after` header on a failure that
names one (OpenCode waits what it says), and turns for requests that offer no tools (aider's
edits are blocks in the answer's text)."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.fakes.model_anthropic import AnthropicDouble, Failure, Turn
from tests.fakes.model_openai import OpenAIDouble

ASK = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}


async def post(url: str, body: dict[str, Any]) -> tuple[int, dict[str, str], Any]:
    async with aiohttp.ClientSession() as session, session.post(url, json=body) as response:
        headers = {name.lower(): value for name, value in response.headers.items()}
        return response.status, headers, await response.json()


async def test_a_failure_may_say_when_to_retry() -> None:
    script = [Turn(failure=Failure(529, "overloaded_error", "Overloaded", retry_after=0)),
              Turn(failure=Failure.overloaded())]
    tools = [{"name": "t", "input_schema": {"type": "object"}}]
    async with AnthropicDouble(script) as model:
        status, headers, body = await post(f"{model.url}/v1/messages", {**ASK, "tools": tools})
        assert (status, headers.get("retry-after")) == (529, "0")
        assert body["error"]["type"] == "overloaded_error"
        status, headers, _ = await post(f"{model.url}/v1/messages", {**ASK, "tools": tools})
        assert status == 529 and "retry-after" not in headers


async def test_without_tools_a_request_is_a_side_question_unless_the_double_is_toolless(
        ) -> None:
    for toolless, answer in ((False, "ok"), (True, "Scripted.")):
        async with AnthropicDouble([Turn(text="Scripted.")], toolless=toolless) as model:
            _, _, body = await post(f"{model.url}/v1/messages", ASK)
            assert body["content"][0]["text"] == answer
            assert model.turns_played == int(toolless)
            assert len(model.main_requests) == int(toolless)
        async with OpenAIDouble([Turn(text="Scripted.")], toolless=toolless) as openai:
            _, _, body = await post(f"{openai.url}/chat/completions",
                                    {"model": "gpt-4.1", "messages": ASK["messages"]})
            assert body["choices"][0]["message"]["content"] == answer
            assert len(openai.main_requests) == int(toolless)
