"""The model proxy, driven by the official Anthropic and OpenAI SDKs as a sandbox's agent would."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
from aiohttp import web
from yarl import URL

from bot.gateway import models
from bot.gateway.grants import Grant
from bot.gateway.models import (
    NO_CREDENTIAL,
    TOO_LARGE,
    UNREACHABLE,
    ModelProxy,
    Upstream,
    add_routes,
)
from bot.gateway.usage import Usage
from tests.gateway.support import MemoryAudit, StaticGrants
from tests.gateway.upstream import (
    ANTHROPIC_MODEL,
    Reply,
    Seen,
    anthropic_error,
    anthropic_events,
    anthropic_message,
    chat_completion,
    chat_events,
    chat_usage,
    json_reply,
    openai_error,
    responses_events,
    sse,
    sse_reply,
)
from tests.gateway.upstream import Upstream as UpstreamDouble

ANTHROPIC_KEY = "sk-ant-api03-operator-secret-0123456789abcdef"
OPENAI_KEY = "sk-proj-operator-secret-0123456789abcdef"
CREDENTIAL = "agw_7_" + "c" * 43
RUN = Grant(run_id=7, installation_id=11, repo_full_name="octo/repo")
PROMPT = "Summarise the confidential design notes of project bluebird"
ANSWER = ["Bluebird ", "is a ", "secret."]
KEYS: dict[str, str | None] = {"anthropic": ANTHROPIC_KEY, "openai": OPENAI_KEY}


@dataclass
class World:
    """The upstream double, the gateway in front of it, and what the gateway booked."""

    upstream: UpstreamDouble
    gateway: str
    grants: StaticGrants
    audit: MemoryAudit
    booked: list[tuple[int, str, Usage]] = field(default_factory=list)
    clients: list[Any] = field(default_factory=list)

    def anthropic(self, **options: Any) -> anthropic.AsyncAnthropic:
        options.setdefault("api_key", CREDENTIAL)
        client = anthropic.AsyncAnthropic(base_url=f"{self.gateway}/anthropic", max_retries=0,
                                          _strict_response_validation=True, **options)
        self.clients.append(client)
        return client

    def openai(self, **options: Any) -> openai.AsyncOpenAI:
        options.setdefault("api_key", CREDENTIAL)
        client = openai.AsyncOpenAI(base_url=f"{self.gateway}/openai/v1", max_retries=0,
                                    _strict_response_validation=True, **options)
        self.clients.append(client)
        return client

    def models_audit(self) -> list[dict[str, Any]]:
        return [data for run_id, kind, data in self.audit.events if kind == "model"]


MakeWorld = Callable[..., Awaitable[World]]


@pytest.fixture
async def make_world(aiohttp_server: Any) -> AsyncIterator[MakeWorld]:
    """Builds a World; `keys` and `upstream_url` override the operator's configuration."""
    worlds: list[World] = []
    sessions: list[aiohttp.ClientSession] = []
    runners: list[web.AppRunner] = []

    async def make(keys: dict[str, str | None] = KEYS, upstream_url: str | None = None,
                   handler_cancellation: bool = True) -> World:
        double = UpstreamDouble()
        upstream_server = await aiohttp_server(double.app)
        base = upstream_url or str(upstream_server.make_url("")).rstrip("/")
        grants = StaticGrants({CREDENTIAL: RUN})
        audit = MemoryAudit()
        session = aiohttp.ClientSession()
        sessions.append(session)
        world = World(double, "", grants, audit)

        async def book(grant: Grant, provider: str, usage: Usage) -> None:
            world.booked.append((grant.run_id, provider, usage))

        upstreams = {
            name: Upstream(base_url=base, api_key=key, kind=name)  # type: ignore[arg-type]
            for name, key in keys.items()
        }
        app = web.Application()
        add_routes(app, ModelProxy(grants, audit, session, upstreams, on_usage=book))
        if handler_cancellation:  # what aiohttp's test server does
            gateway_server = await aiohttp_server(app)
            world.gateway = str(gateway_server.make_url("")).rstrip("/")
        else:  # what `agentbot serve` does: AppRunner's default
            runner = web.AppRunner(app, handler_cancellation=False)
            runners.append(runner)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", 0).start()
            world.gateway = f"http://127.0.0.1:{runner.addresses[0][1]}"
        worlds.append(world)
        return world

    yield make
    for world in worlds:
        for client in world.clients:
            await client.close()
    for session in sessions:
        await session.close()
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def world(make_world: MakeWorld) -> World:
    return await make_world()


def assert_operator_key_only(seen: Seen, provider: str) -> None:
    """The upstream got the operator's key where the provider wants it, and no credential."""
    if provider == "anthropic":
        assert seen.headers["x-api-key"] == ANTHROPIC_KEY
        assert "Authorization" not in seen.headers
    else:
        assert seen.headers["Authorization"] == f"Bearer {OPENAI_KEY}"
        assert "x-api-key" not in seen.headers
    assert all(CREDENTIAL not in value for value in seen.headers.values())
    assert CREDENTIAL.encode() not in seen.body
    assert seen.headers["Accept-Encoding"] == "identity"


# --- Anthropic ----------------------------------------------------------------------------


async def test_anthropic_stream_helper_gets_text_and_usage(world: World) -> None:
    world.upstream.answer(sse_reply(anthropic_events(
        ANSWER, input_tokens=25, output_tokens=15, cache_read=300, cache_write=40)))
    client = world.anthropic()
    async with client.messages.stream(model=ANTHROPIC_MODEL, max_tokens=64,
                                      messages=[{"role": "user", "content": PROMPT}]) as stream:
        text = "".join([part async for part in stream.text_stream])
        final = await stream.get_final_message()

    assert text == "".join(ANSWER)
    assert (final.usage.input_tokens, final.usage.output_tokens) == (25, 15)
    assert world.booked == [(7, "anthropic", Usage(
        model=final.model, input_tokens=final.usage.input_tokens,
        output_tokens=final.usage.output_tokens,
        cache_read_tokens=final.usage.cache_read_input_tokens or 0,
        cache_write_tokens=final.usage.cache_creation_input_tokens or 0))]
    [seen] = world.upstream.seen
    assert (seen.method, seen.path_qs) == ("POST", "/v1/messages")
    assert seen.json()["stream"] is True
    assert seen.headers["anthropic-version"]  # the SDK's own headers pass
    assert_operator_key_only(seen, "anthropic")
    [audit] = world.models_audit()
    assert audit == {"provider": "anthropic", "path": "/v1/messages", "status": 200,
                     "model": ANTHROPIC_MODEL, "input_tokens": 25, "output_tokens": 15,
                     "cache_read_tokens": 300, "cache_write_tokens": 40, "end": "complete",
                     "seconds": audit["seconds"]}
    assert 0 <= audit["seconds"] < 10


async def test_anthropic_raw_stream_parses_every_event(world: World) -> None:
    events = anthropic_events(ANSWER, input_tokens=9, output_tokens=4)
    world.upstream.answer(sse_reply(events))
    stream = await world.anthropic().messages.create(
        model=ANTHROPIC_MODEL, max_tokens=64, stream=True,
        messages=[{"role": "user", "content": PROMPT}])
    received = [event async for event in stream]

    # The SDK passes on every event but the pings.
    assert [event.type for event in received] == [name for name, _ in events if name != "ping"]
    text = "".join(event.delta.text for event in received
                   if event.type == "content_block_delta" and event.delta.type == "text_delta")
    assert text == "".join(ANSWER)
    start = received[0]
    delta = received[-2]
    assert start.type == "message_start" and delta.type == "message_delta"
    assert world.booked == [(7, "anthropic", Usage(
        model=start.message.model, input_tokens=start.message.usage.input_tokens,
        output_tokens=delta.usage.output_tokens))]


async def test_anthropic_json_message_and_bearer_credential(world: World) -> None:
    """Claude Code with ANTHROPIC_AUTH_TOKEN sends the credential as a bearer token."""
    world.upstream.answer(json_reply(anthropic_message(
        "".join(ANSWER), input_tokens=12, output_tokens=6, cache_read=7)))
    client = world.anthropic(api_key=None, auth_token=CREDENTIAL)
    message = await client.messages.create(model=ANTHROPIC_MODEL, max_tokens=64,
                                            messages=[{"role": "user", "content": PROMPT}])

    assert message.content[0].type == "text"
    assert message.content[0].text == "".join(ANSWER)
    assert world.booked == [(7, "anthropic", Usage(
        model=message.model, input_tokens=message.usage.input_tokens,
        output_tokens=message.usage.output_tokens,
        cache_read_tokens=message.usage.cache_read_input_tokens or 0))]
    assert_operator_key_only(world.upstream.seen[0], "anthropic")


async def test_a_gzipped_answer_reaches_the_client_decoded_and_metered(world: World) -> None:
    """A provider that compresses in spite of `identity` still has its usage read."""
    body = gzip.compress(json.dumps(anthropic_message("ok", 3, 2)).encode())
    world.upstream.answer(Reply(headers={"Content-Type": "application/json",
                                         "Content-Encoding": "gzip"},
                                chunks=[body], streamed=False))
    message = await world.anthropic().messages.create(
        model=ANTHROPIC_MODEL, max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    assert message.usage.input_tokens == 3
    assert world.booked == [(7, "anthropic", Usage(ANTHROPIC_MODEL, 3, 2))]


# --- OpenAI -------------------------------------------------------------------------------


async def test_openai_responses_stream(world: World) -> None:
    world.upstream.answer(sse_reply(responses_events(
        ANSWER, input_tokens=2006, output_tokens=300, cached=1920)))
    stream = await world.openai().responses.create(model="gpt-4.1", input=PROMPT, stream=True)
    deltas: list[str] = []
    completed = None
    async for event in stream:
        if event.type == "response.output_text.delta":
            deltas.append(event.delta)
        elif event.type == "response.completed":
            completed = event.response

    assert "".join(deltas) == "".join(ANSWER)
    assert completed is not None and completed.usage is not None
    usage = completed.usage
    cached = usage.input_tokens_details.cached_tokens
    assert world.booked == [(7, "openai", Usage(
        model=completed.model, input_tokens=usage.input_tokens - cached,
        output_tokens=usage.output_tokens, cache_read_tokens=cached))]
    assert world.booked[0][2].input_tokens == 86
    [seen] = world.upstream.seen
    assert (seen.method, seen.path_qs) == ("POST", "/v1/responses")
    assert_operator_key_only(seen, "openai")


def answer_chat(seen: Seen) -> Reply:
    """Streams usage only when asked to, as the Chat Completions API does."""
    request = seen.json()
    asked = (request.get("stream_options") or {}).get("include_usage") is True
    return sse_reply(chat_events(ANSWER, chat_usage(1200, 40, cached=1024) if asked else None))


async def test_chat_completions_stream_is_made_to_report_usage(world: World) -> None:
    world.upstream.answer(answer_chat)
    stream = await world.openai().chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPT}], stream=True)
    chunks = [chunk async for chunk in stream]

    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == "".join(ANSWER)
    usage = chunks[-1].usage
    assert usage is not None and usage.prompt_tokens_details is not None
    cached = usage.prompt_tokens_details.cached_tokens or 0
    assert world.booked == [(7, "openai", Usage(
        model=chunks[-1].model, input_tokens=usage.prompt_tokens - cached,
        output_tokens=usage.completion_tokens, cache_read_tokens=cached))]
    [seen] = world.upstream.seen
    assert seen.path_qs == "/v1/chat/completions"
    assert seen.json()["stream_options"] == {"include_usage": True}
    assert_operator_key_only(seen, "openai")


@pytest.mark.parametrize("body", [
    # Not streamed: usage comes in the body anyway.
    b'{"model":  "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}',
    # Streamed and already asking for usage.
    b'{"stream": true, "stream_options": {"include_usage": true}, "model": "m",\n'
    b' "messages": []}',
    # Not JSON at all: the provider's to refuse.
    b"{not json",
])
async def test_chat_bodies_that_need_nothing_pass_byte_for_byte(world: World,
                                                                body: bytes) -> None:
    world.upstream.answer(json_reply(chat_completion("hi", chat_usage(5, 1))))
    async with aiohttp.ClientSession() as session, session.post(
            f"{world.gateway}/openai/v1/chat/completions", data=body,
            headers={"Authorization": f"Bearer {CREDENTIAL}",
                     "Content-Type": "application/json"}) as response:
        assert response.status == 200
        await response.read()
    assert world.upstream.seen[0].body == body


async def test_chat_stream_options_keep_what_the_client_set(world: World) -> None:
    world.upstream.answer(answer_chat)
    stream = await world.openai().chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], stream=True,
        stream_options={"include_obfuscation": False})
    [chunk async for chunk in stream]
    assert world.upstream.seen[0].json()["stream_options"] == {
        "include_obfuscation": False, "include_usage": True}


# --- Provider errors pass through ---------------------------------------------------------


async def test_anthropic_rate_limit_passes_through_with_retry_after(world: World) -> None:
    world.upstream.answer(json_reply(
        anthropic_error("rate_limit_error", "Number of request tokens has exceeded your limit"),
        status=429, headers={"retry-after": "7", "anthropic-ratelimit-tokens-remaining": "0"}))
    with pytest.raises(anthropic.RateLimitError) as caught:
        await world.anthropic().messages.create(
            model=ANTHROPIC_MODEL, max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 429
    assert caught.value.response.headers["retry-after"] == "7"
    assert caught.value.response.headers["anthropic-ratelimit-tokens-remaining"] == "0"
    assert caught.value.response.json()["error"]["type"] == "rate_limit_error"
    assert world.booked == []
    assert world.models_audit()[0]["status"] == 429


async def test_anthropic_overloaded_passes_through_to_a_stream(world: World) -> None:
    world.upstream.answer(json_reply(anthropic_error("overloaded_error", "Overloaded"),
                                     status=529))
    with pytest.raises(anthropic.OverloadedError) as caught:
        await world.anthropic().messages.create(
            model=ANTHROPIC_MODEL, max_tokens=8, stream=True,
            messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 529
    assert world.models_audit()[0]["status"] == 529


@pytest.mark.parametrize(("status", "error", "headers", "raised"), [
    (429, openai_error("Rate limit reached for gpt-4.1", "requests", "rate_limit_exceeded"),
     {"retry-after": "3", "x-ratelimit-remaining-requests": "0"}, openai.RateLimitError),
    (500, openai_error("The server had an error while processing your request.",
                       "server_error", None), {}, openai.InternalServerError),
    # The operator's key is revoked: the agent learns it as from the provider.
    (401, openai_error("Incorrect API key provided: sk-proj-****cdef.",
                       "invalid_request_error", "invalid_api_key"), {},
     openai.AuthenticationError),
])
async def test_openai_errors_pass_through(world: World, status: int, error: dict[str, Any],
                                          headers: dict[str, str],
                                          raised: type[Exception]) -> None:
    world.upstream.answer(json_reply(error, status=status, headers=headers))
    with pytest.raises(raised) as caught:
        await world.openai().responses.create(model="gpt-4.1", input="hi", stream=True)
    assert isinstance(caught.value, openai.APIStatusError)
    assert caught.value.status_code == status
    assert caught.value.response.json() == error
    for name, value in headers.items():
        assert caught.value.response.headers[name] == value
    assert world.booked == []


# --- Refusals by the gateway --------------------------------------------------------------


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
async def test_an_unknown_credential_is_refused_in_the_providers_shape(
        world: World, provider: str) -> None:
    forged = "agw_7_" + "f" * 43
    if provider == "anthropic":
        with pytest.raises(anthropic.AuthenticationError) as caught_a:
            await world.anthropic(api_key=forged).messages.create(
                model=ANTHROPIC_MODEL, max_tokens=8, messages=[{"role": "user", "content": "x"}])
        body = caught_a.value.response.json()
        assert body == {"type": "error",
                        "error": {"type": "authentication_error", "message": NO_CREDENTIAL}}
    else:
        with pytest.raises(openai.AuthenticationError) as caught_o:
            await world.openai(api_key=forged).responses.create(model="gpt-4.1", input="x")
        body = caught_o.value.response.json()
        assert body["error"]["message"] == NO_CREDENTIAL
        assert body["error"]["type"] == "invalid_request_error"
        assert body["error"]["code"] == "invalid_api_key"
    assert world.upstream.seen == []
    assert world.audit.events == []


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Basic Zm9vOmJhcg=="},
                                     {"x-api-key": ""}])
async def test_a_missing_credential_is_refused(world: World, headers: dict[str, str]) -> None:
    async with aiohttp.ClientSession() as session, session.post(
            f"{world.gateway}/anthropic/v1/messages", json={}, headers=headers) as response:
        assert response.status == 401
        assert (await response.json())["error"]["type"] == "authentication_error"
    assert world.upstream.seen == []


async def test_a_credential_stops_working_when_its_run_ends(world: World) -> None:
    world.upstream.answer(json_reply(anthropic_message("ok")))
    client = world.anthropic()
    await client.messages.create(model=ANTHROPIC_MODEL, max_tokens=8,
                                 messages=[{"role": "user", "content": "x"}])
    del world.grants.table[CREDENTIAL]
    with pytest.raises(anthropic.AuthenticationError):
        await client.messages.create(model=ANTHROPIC_MODEL, max_tokens=8,
                                     messages=[{"role": "user", "content": "x"}])
    assert len(world.upstream.seen) == 1


async def test_a_provider_without_an_operator_key_answers_503(make_world: MakeWorld) -> None:
    world = await make_world(keys={"anthropic": ANTHROPIC_KEY, "openai": None})
    with pytest.raises(openai.InternalServerError) as caught:
        await world.openai().responses.create(model="gpt-4.1", input="x")
    assert caught.value.status_code == 503
    assert caught.value.response.json()["error"]["message"] == (
        "The operator has not configured openai on this agentbot gateway: set OPENAI_API_KEY "
        "or CODEX_API_KEY in the gateway's environment.")
    assert world.upstream.seen == []
    assert world.models_audit()[0]["status"] == 503


async def test_an_unreachable_provider_answers_502(make_world: MakeWorld) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    world = await make_world(upstream_url=f"http://127.0.0.1:{closed_port}")
    with pytest.raises(anthropic.InternalServerError) as caught:
        await world.anthropic().messages.create(
            model=ANTHROPIC_MODEL, max_tokens=8, messages=[{"role": "user", "content": "x"}])
    assert caught.value.status_code == 502
    assert caught.value.response.json() == {"type": "error", "error": {
        "type": "api_error", "message": UNREACHABLE.format(provider="anthropic")}}
    assert world.models_audit()[0]["status"] == 502


async def test_an_oversized_request_is_refused(world: World,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "REQUEST_LIMIT", 4096)
    with pytest.raises(anthropic.APIStatusError) as caught:
        await world.anthropic().messages.create(
            model=ANTHROPIC_MODEL, max_tokens=8, messages=[{"role": "user", "content": "x" * 5000}])
    assert caught.value.status_code == 413
    assert caught.value.response.json()["error"] == {
        "type": "request_too_large", "message": TOO_LARGE.format(limit=4096)}
    assert world.upstream.seen == []


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "HEAD"])
async def test_only_get_and_post_are_served(world: World, method: str) -> None:
    async with aiohttp.ClientSession() as session, session.request(
            method, f"{world.gateway}/openai/v1/files/f1",
            headers={"Authorization": f"Bearer {CREDENTIAL}"}) as response:
        assert response.status == 405
    assert world.upstream.seen == []


@pytest.mark.parametrize(("provider", "method", "path"), [
    ("anthropic", "POST", "/v1/messages/batches"),
    ("anthropic", "POST", "/v1/files"),
    ("anthropic", "GET", "/v1/messages/batches/msgbatch_01/results"),
    ("anthropic", "POST", "/v1/messages/"),
    ("anthropic", "POST", "/v1//messages"),
    ("anthropic", "POST", "/v1/messages%2F..%2Fbatches"),
    ("anthropic", "POST", "/v1/%6dessages"),
    ("anthropic", "GET", "/v1/messages"),
    ("openai", "POST", "/v1/batches"),
    ("openai", "POST", "/v1/fine_tuning/jobs"),
    ("openai", "GET", "/v1/responses/resp_67ccd2bed1ec8190"),
    ("openai", "POST", "/v1/images/generations"),
    ("openai", "GET", "/v1/organization/costs"),
    ("openai", "GET", "/v1/models/../files"),
])
async def test_only_what_an_agent_needs_is_forwarded(world: World, provider: str, method: str,
                                                    path: str) -> None:
    headers = {"x-api-key": CREDENTIAL, "Authorization": f"Bearer {CREDENTIAL}"}
    target = URL(f"{world.gateway}/{provider}{path}", encoded=True)
    async with aiohttp.ClientSession() as session, session.request(
            method, target, json={"model": "m"}, headers=headers) as response:
        assert response.status == 404
        body = await response.json()
    message = body["error"]["message"]
    assert message.startswith(f"The agentbot gateway does not forward {method} ")
    assert "POST /v1/messages" in message if provider == "anthropic" else \
        "POST /v1/responses" in message
    assert "GET /v1/models/{model}" in message
    if provider == "anthropic":
        assert body["error"]["type"] == "not_found_error"
    assert world.upstream.seen == []
    [audit] = world.models_audit()
    assert (audit["status"], audit["end"]) == (404, "refused")


async def test_token_counts_and_a_models_details_are_forwarded(world: World) -> None:
    world.upstream.answer(json_reply({"input_tokens": 12}),
                          json_reply({"id": ANTHROPIC_MODEL, "type": "model"}))
    client = world.anthropic()
    count = await client.messages.count_tokens(
        model=ANTHROPIC_MODEL, messages=[{"role": "user", "content": "hi"}])
    assert count.input_tokens == 12
    async with aiohttp.ClientSession() as session, session.get(
            f"{world.gateway}/anthropic/v1/models/{ANTHROPIC_MODEL}",
            headers={"x-api-key": CREDENTIAL}) as response:
        assert response.status == 200
    assert [seen.path_qs for seen in world.upstream.seen] == [
        "/v1/messages/count_tokens", f"/v1/models/{ANTHROPIC_MODEL}"]


async def test_only_configured_providers_are_routed(world: World) -> None:
    async with aiohttp.ClientSession() as session, session.post(
            f"{world.gateway}/gemini/v1beta/models",
            headers={"x-api-key": CREDENTIAL}) as response:
        assert response.status == 404


# --- Forwarding ---------------------------------------------------------------------------


async def test_query_kept_and_hop_by_hop_and_auth_headers_dropped(world: World) -> None:
    world.upstream.answer(json_reply({"object": "list", "data": []},
                                     headers={"x-request-id": "req_abc", "Set-Cookie": "a=1",
                                              "openai-processing-ms": "12"}))
    headers = {"Authorization": f"Bearer {CREDENTIAL}", "x-api-key": CREDENTIAL,
               "X-Custom": "kept", "OpenAI-Beta": "assistants=v2",
               "Proxy-Authorization": "Basic c2FuZGJveA==", "TE": "trailers",
               "Connection": "keep-alive, X-Drop", "X-Drop": "dropped",
               "Accept-Encoding": "gzip, br"}
    # Encoded as sent: the gateway must not decode or re-encode a path or query on the way.
    target = URL(f"{world.gateway}/openai/v1/models?limit=2&after=a%2Fb", encoded=True)
    async with aiohttp.ClientSession() as session, session.get(
            target, headers=headers) as response:
        assert response.status == 200
        assert response.headers["x-request-id"] == "req_abc"
        assert response.headers["openai-processing-ms"] == "12"
        assert await response.json() == {"object": "list", "data": []}

    [seen] = world.upstream.seen
    assert (seen.method, seen.path_qs) == ("GET", "/v1/models?limit=2&after=a%2Fb")
    assert seen.headers["X-Custom"] == "kept"
    assert seen.headers["OpenAI-Beta"] == "assistants=v2"
    for dropped in ("Proxy-Authorization", "TE", "X-Drop"):
        assert dropped not in seen.headers
    assert_operator_key_only(seen, "openai")
    assert world.booked == []  # a listing reports no usage
    assert world.models_audit()[0]["path"] == "/v1/models"


# --- Streaming ----------------------------------------------------------------------------


async def test_streaming_is_not_buffered(world: World) -> None:
    gate = asyncio.Event()
    world.upstream.answer(sse_reply(anthropic_events(ANSWER), gate=gate, gate_after=1))
    stream = await world.anthropic().messages.create(
        model=ANTHROPIC_MODEL, max_tokens=64, stream=True,
        messages=[{"role": "user", "content": PROMPT}])
    # The upstream holds back everything after message_start until the client has read it.
    first = await asyncio.wait_for(stream.__anext__(), timeout=5)
    assert first.type == "message_start"
    assert not world.upstream.finished.is_set()
    gate.set()
    rest = [event async for event in stream]
    assert rest[-1].type == "message_stop"
    assert world.upstream.finished.is_set()


@pytest.mark.parametrize("kind", ["responses", "anthropic"])
async def test_usage_is_booked_before_the_client_reads_the_final_usage_event(
        world: World, kind: str) -> None:
    """Codex sends its next request as soon as it reads `response.completed`, before the
    stream has ended: that request's budget check must already count this response."""
    gate = asyncio.Event()
    events = (responses_events(ANSWER, input_tokens=40, output_tokens=9) if kind == "responses"
              else anthropic_events(ANSWER, input_tokens=40, output_tokens=9))
    chunks = sse(events)
    # Everything, the final usage event included, then the stream stays open a while.
    world.upstream.answer(Reply(headers={"Content-Type": "text/event-stream"},
                                chunks=[*chunks, b": still open\n\n"], gate=gate,
                                gate_after=len(chunks)))
    if kind == "responses":
        stream: Any = await world.openai().responses.create(model="gpt-4.1", input=PROMPT,
                                                            stream=True)
        last = "response.completed"
    else:
        stream = await world.anthropic().messages.create(
            model=ANTHROPIC_MODEL, max_tokens=64, stream=True,
            messages=[{"role": "user", "content": PROMPT}])
        last = "message_delta"
    async for event in stream:
        if event.type == last:
            break
    assert not world.upstream.finished.is_set()  # the stream has not ended
    assert len(world.booked) == 1 and world.booked[0][2].input_tokens == 40
    gate.set()
    await stream.close()


async def test_a_stream_cut_upstream_is_cut_for_the_client_and_booked(world: World) -> None:
    # message_start, content_block_start, ping and one delta, then the connection drops.
    world.upstream.answer(sse_reply(anthropic_events(ANSWER, input_tokens=30), cut_after=4))
    stream = await world.anthropic().messages.create(
        model=ANTHROPIC_MODEL, max_tokens=64, stream=True,
        messages=[{"role": "user", "content": PROMPT}])
    received = []
    with pytest.raises(Exception) as caught:  # noqa: B017 (whatever the SDK's transport says)
        async for event in stream:
            received.append(event)
    assert not isinstance(caught.value, AssertionError)
    assert [event.type for event in received][:3] == [
        "message_start", "content_block_start", "content_block_delta"]
    assert "message_stop" not in [event.type for event in received]
    assert world.booked == [(7, "anthropic", Usage(ANTHROPIC_MODEL, 30, 1))]
    assert world.models_audit()[0]["end"] == "upstream_cut"


@pytest.mark.parametrize("handler_cancellation", [True, False])
async def test_a_client_that_leaves_mid_stream_is_still_booked(
        make_world: MakeWorld, handler_cancellation: bool) -> None:
    world = await make_world(handler_cancellation=handler_cancellation)
    gate = asyncio.Event()
    # Paced, so the gateway is still writing when the client's connection is gone.
    world.upstream.answer(sse_reply(anthropic_events(["x"] * 200, input_tokens=50),
                                    gate=gate, gate_after=1, interval=0.002))
    async with aiohttp.ClientSession() as session:
        response = await session.post(f"{world.gateway}/anthropic/v1/messages",
                                      headers={"x-api-key": CREDENTIAL}, json={"stream": True})
        assert (await response.content.readuntil(b"\n\n")).startswith(b"event: message_start")
        response.close()  # drops the connection, as a killed CLI would
    gate.set()
    for _ in range(500):
        if world.models_audit():
            break
        await asyncio.sleep(0.01)
    [audit] = world.models_audit()
    assert audit["end"] == "client_gone"
    assert world.booked == [(7, "anthropic", Usage(ANTHROPIC_MODEL, 50, 1))]
    assert not world.upstream.finished.is_set()  # the gateway stopped reading upstream too


# --- Logs ---------------------------------------------------------------------------------


async def test_no_secret_or_body_in_the_gateways_logs(
        world: World, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    world.upstream.answer(
        sse_reply(anthropic_events(ANSWER)),
        json_reply(anthropic_error("rate_limit_error", "slow down"), status=429),
        answer_chat,
    )
    client = world.anthropic()
    async with client.messages.stream(model=ANTHROPIC_MODEL, max_tokens=64,
                                      messages=[{"role": "user", "content": PROMPT}]) as stream:
        await stream.get_final_message()
    with pytest.raises(anthropic.RateLimitError):
        await client.messages.create(model=ANTHROPIC_MODEL, max_tokens=8,
                                     messages=[{"role": "user", "content": PROMPT}])
    chat = await world.openai().chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": PROMPT}], stream=True)
    [chunk async for chunk in chat]
    with pytest.raises(anthropic.AuthenticationError):
        await world.anthropic(api_key=CREDENTIAL + "x").messages.create(
            model=ANTHROPIC_MODEL, max_tokens=8, messages=[{"role": "user", "content": PROMPT}])

    # The SDKs' own debug logs are the sandbox's side (they hold its prompt); the gateway's
    # side is everything else.
    gateway_side = [record for record in caplog.records
                    if not record.name.startswith(("anthropic", "openai", "httpx", "httpcore"))]
    assert any(record.name.startswith("bot.gateway") for record in gateway_side)
    secrets = (ANTHROPIC_KEY, OPENAI_KEY, CREDENTIAL, PROMPT, "Bluebird", "slow down")
    for record in gateway_side:
        text = " ".join([record.getMessage(), str(record.exc_text or ""),
                         *(str(value) for value in record.__dict__.values())])
        for secret in secrets:
            assert secret not in text, record.name


def test_an_upstreams_repr_holds_no_key() -> None:
    assert ANTHROPIC_KEY not in repr(Upstream("https://api.anthropic.com", ANTHROPIC_KEY,
                                              "anthropic"))
