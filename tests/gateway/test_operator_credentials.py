"""The operator's choice of credential reaches each provider as its API expects it."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import aiohttp
import anthropic
import openai
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.config.settings import Settings, load_settings
from bot.gateway.app import Gateway
from bot.gateway.grants import Grant
from bot.gateway.models import ANTHROPIC_OAUTH_BETA, ModelProxy, Upstream, add_routes
from tests.gateway.support import MemoryAudit, StaticGrants
from tests.gateway.upstream import JSON_TYPE, Reply, anthropic_message
from tests.gateway.upstream import Upstream as UpstreamDouble

CREDENTIAL = "agw_9_" + "d" * 43
OAUTH_TOKEN = "sk-ant-oat01-" + "o" * 95 + "AA"
API_KEY = "sk-ant-api03-" + "k" * 95 + "AA"
CODEX_KEY = "sk-proj-codex-operator-key-0123456789"
BETAS = "claude-code-20250219,fine-grained-tool-streaming-2025-05-14"


async def _proxy(aiohttp_server: Any, upstream: Upstream) -> str:
    session = aiohttp.ClientSession()
    app = web.Application()
    app.on_cleanup.append(lambda _: session.close())
    add_routes(app, ModelProxy(StaticGrants({CREDENTIAL: Grant(9, 1, "octo/repo")}),
                               MemoryAudit(), session, {upstream.kind: upstream}))
    server = await aiohttp_server(app)
    return str(server.make_url("")).rstrip("/")


def _message() -> Reply:
    return Reply(headers={"Content-Type": JSON_TYPE},
                 chunks=[json.dumps(anthropic_message("Done.")).encode()], streamed=False)


async def test_an_oauth_token_goes_upstream_as_a_bearer_token_with_the_oauth_beta(
        aiohttp_server: Any) -> None:
    double = UpstreamDouble()
    base = str((await aiohttp_server(double.app)).make_url("")).rstrip("/")
    gateway = await _proxy(aiohttp_server, Upstream(base, OAUTH_TOKEN, "anthropic", oauth=True))
    double.answer(_message())
    # What Claude Code sends: its own betas, and the gateway credential where its key goes.
    async with anthropic.AsyncAnthropic(base_url=f"{gateway}/anthropic", api_key=CREDENTIAL,
                                        max_retries=0) as client:
        answer = await client.messages.create(
            model="claude-sonnet-4-5", max_tokens=16,
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"anthropic-beta": BETAS})

    assert answer.content[0].text == "Done."  # type: ignore[union-attr]
    [seen] = double.seen
    assert seen.headers["Authorization"] == f"Bearer {OAUTH_TOKEN}"
    assert "x-api-key" not in seen.headers
    assert seen.headers.getall("anthropic-beta") == [
        f"{BETAS},{ANTHROPIC_OAUTH_BETA}"]
    assert all(CREDENTIAL not in value for value in seen.headers.values())


async def test_an_api_key_goes_upstream_as_x_api_key_without_the_oauth_beta(
        aiohttp_server: Any) -> None:
    double = UpstreamDouble()
    base = str((await aiohttp_server(double.app)).make_url("")).rstrip("/")
    gateway = await _proxy(aiohttp_server, Upstream(base, API_KEY, "anthropic"))
    double.answer(_message())
    async with anthropic.AsyncAnthropic(base_url=f"{gateway}/anthropic", api_key=CREDENTIAL,
                                        max_retries=0) as client:
        await client.messages.create(model="claude-sonnet-4-5", max_tokens=16,
                                     messages=[{"role": "user", "content": "hi"}])
    [seen] = double.seen
    assert seen.headers["x-api-key"] == API_KEY
    assert "Authorization" not in seen.headers and "anthropic-beta" not in seen.headers


async def test_codex_api_key_is_the_openai_key_and_openai_base_url_its_upstream(
        aiohttp_server: Any, engine: AsyncEngine, monkeypatch: Any, tmp_path: Any,
        app_private_key: str) -> None:
    double = UpstreamDouble()
    base = str((await aiohttp_server(double.app)).make_url("")).rstrip("/")
    monkeypatch.chdir(tmp_path)  # no .env of the working tree
    for name, value in {"GITHUB_APP_ID": "1", "GITHUB_PRIVATE_KEY": app_private_key,
                        "GITHUB_WEBHOOK_SECRET": "s", "CODEX_API_KEY": CODEX_KEY,
                        "OPENAI_BASE_URL": f"{base}/v1", "ANTHROPIC_BASE_URL": base,
                        "CLAUDE_CODE_OAUTH_TOKEN": OAUTH_TOKEN}.items():
        monkeypatch.setenv(name, value)
    settings, problems = load_settings()
    assert settings is not None and problems == []
    assert (settings.openai_api_key, settings.openai_url) == (CODEX_KEY, base)
    gateway = Gateway(settings, engine, github=None)  # type: ignore[arg-type]
    try:
        upstreams = gateway.models.upstreams
        assert (upstreams["openai"].api_key, upstreams["openai"].base_url) == (CODEX_KEY, base)
        anthropic_upstream = upstreams["anthropic"]
        assert (anthropic_upstream.api_key, anthropic_upstream.oauth) == (OAUTH_TOKEN, True)
        assert anthropic_upstream.base_url == base
    finally:
        await gateway.session.close()

    proxied = await _proxy(aiohttp_server, upstreams["openai"])
    double.answer(Reply(headers={"Content-Type": JSON_TYPE}, chunks=[json.dumps({
        "id": "m", "object": "list", "data": []}).encode()], streamed=False))
    async with openai.AsyncOpenAI(base_url=f"{proxied}/openai/v1", api_key=CREDENTIAL,
                                  max_retries=0) as client:
        await client.models.list()
    [seen] = double.seen
    assert (seen.path_qs, seen.headers["Authorization"]) == ("/v1/models", f"Bearer {CODEX_KEY}")


async def test_an_api_key_wins_over_an_oauth_token(
        make_settings: Callable[..., Settings], engine: AsyncEngine) -> None:
    settings = make_settings(anthropic_api_key=API_KEY, claude_code_oauth_token=OAUTH_TOKEN)
    gateway = Gateway(settings, engine, github=None)  # type: ignore[arg-type]
    await gateway.session.close()
    upstream = gateway.models.upstreams["anthropic"]
    assert (upstream.api_key, upstream.oauth) == (API_KEY, False)


def test_the_agentbot_names_win_over_the_clis_and_keys_stay_out_of_repr(
        monkeypatch: Any, tmp_path: Any, app_private_key: str) -> None:
    monkeypatch.chdir(tmp_path)
    for name, value in {"GITHUB_APP_ID": "1", "GITHUB_PRIVATE_KEY": app_private_key,
                        "GITHUB_WEBHOOK_SECRET": "s", "OPENAI_API_KEY": "sk-first",
                        "CODEX_API_KEY": "sk-second",
                        "AGENTBOT_ANTHROPIC_URL": "https://a.test",
                        "ANTHROPIC_BASE_URL": "https://b.test"}.items():
        monkeypatch.setenv(name, value)
    settings, problems = load_settings()
    assert settings is not None and problems == []
    assert (settings.openai_api_key, settings.anthropic_url) == ("sk-first", "https://a.test")
    assert "sk-first" not in repr(settings)
