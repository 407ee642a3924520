"""The gateway's process parts: one HTTP app (model APIs, git, health) and the egress proxy.

`gateway_app(settings)` is `agentbot gateway`: its own database connection and GitHub client.
`Gateway` is what `agentbot serve` also runs in-process beside the local executor, sharing
the bot's engine and GitHub client.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import ClientSession, ClientTimeout, web
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.config.settings import Settings
from bot.gateway import git, hosts, models
from bot.gateway.credentials import gateway_key
from bot.gateway.egress import EgressProxy
from bot.gateway.runs import DatabaseAudit, RunBudgets, RunGrants, UsageLedger
from bot.gateway.tokens import RunTokens, TokenMinter
from bot.redact import register_secret
from bot.store.tables import create_engine

log = logging.getLogger(__name__)

READY_DB_TIMEOUT = 2.0


@dataclass
class _Slot:
    """Where an app finds its gateway: made at start-up, after aiohttp froze the app."""

    gateway: Gateway | None = None

    def get(self) -> Gateway:
        if self.gateway is None:
            raise web.HTTPServiceUnavailable(text="the gateway is starting\n")
        return self.gateway


SLOT_KEY: web.AppKey[_Slot] = web.AppKey("gateway", _Slot)


class Gateway:
    """The sandbox's only way out: model providers with the operator's keys, the run's one
    repository with a read token the gateway mints, and allowed hosts through its proxy."""

    def __init__(self, settings: Settings, engine: AsyncEngine, github: TokenMinter, *,
                 session: ClientSession | None = None,
                 egress: EgressProxy | None = None) -> None:
        self.settings = settings
        for secret in (settings.anthropic_api_key, settings.claude_code_oauth_token,
                       settings.openai_api_key):
            if secret:
                register_secret(secret)
        key = gateway_key(settings.private_key_pem() or "")
        # The package registries of the common languages, and what the operator adds.
        self.grants = RunGrants(engine, key, allowed_hosts=(*hosts.DEFAULT_ALLOWED,
                                                            *settings.egress_hosts),
                                repo_may_add=settings.egress_repo_hosts)
        self.audit = DatabaseAudit(engine)
        self.tokens = RunTokens(github, engine)
        self.engine = engine
        self._own_session = session is None
        # No total timeout: a clone or a model's stream may run for many minutes; each proxy
        # bounds its own connect and read times.
        self.session = session or ClientSession(timeout=ClientTimeout(total=None),
                                                auto_decompress=False)
        upstreams = {
            # An API key wins over a subscription's token, as it does in Claude Code itself.
            "anthropic": models.Upstream(
                settings.anthropic_url,
                settings.anthropic_api_key or settings.claude_code_oauth_token, "anthropic",
                oauth=not settings.anthropic_api_key and bool(settings.claude_code_oauth_token)),
            "openai": models.Upstream(settings.openai_url, settings.openai_api_key, "openai"),
        }
        prices = settings.prices()
        self.models = models.ModelProxy(self.grants, self.audit, self.session, upstreams,
                                        on_usage=UsageLedger(engine, prices),
                                        budgets=RunBudgets(engine, prices))
        self.git = git.GitProxy(self.grants, self.audit, self.tokens, self.session)
        self.egress = egress or EgressProxy(self.grants, self.audit)
        self.proxy_port: int | None = None

    async def start(self, host: str, proxy_port: int) -> None:
        self.tokens.start()
        self.proxy_port = await self.egress.start(host, proxy_port)
        log.info("gateway egress proxy listening", extra={"port": self.proxy_port})

    def run_changed(self) -> None:
        """A run changed in this process: refuse an ended run's credential at once rather
        than when its cached grant expires, and revoke its token."""
        self.grants.forget()
        self.tokens.notify()

    async def close(self) -> None:
        await self.egress.close()
        await self.tokens.close()
        if self._own_session:
            await self.session.close()

    async def ready(self) -> str | None:
        try:
            async with asyncio.timeout(READY_DB_TIMEOUT):
                async with self.engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001 - any failure means not ready
            return f"database unreachable ({type(exc).__name__})"
        return None


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    problem = await request.app[SLOT_KEY].get().ready()
    if problem:
        return web.json_response({"status": "unavailable", "problems": [problem]}, status=503)
    return web.json_response({"status": "ok"})


def _app() -> tuple[web.Application, _Slot]:
    # Agents send whole conversations per request; the model proxy caps the body itself.
    app = web.Application(client_max_size=models.REQUEST_LIMIT + 1)
    slot = app[SLOT_KEY] = _Slot()
    _add_routes(app)
    return app, slot


def gateway_app(settings: Settings, *, github: TokenMinter | None = None,
                engine: AsyncEngine | None = None) -> web.Application:
    """`agentbot gateway`: the gateway alone, with its own database pool and GitHub client.

    It does not migrate: the bot does, and the gateway's tables come with the bot's."""
    app, slot = _app()

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        from bot.github.client import GitHubApp

        own_engine = engine is None
        db = engine or create_engine(settings.database_url)
        session = ClientSession(timeout=ClientTimeout(total=30))
        minter: Any = github or GitHubApp.from_settings(settings, session)
        slot.gateway = Gateway(settings, db, minter)
        try:
            await slot.gateway.start(settings.host, settings.gateway_proxy_port)
            yield
        finally:
            await slot.gateway.close()
            slot.gateway = None
            await session.close()
            if own_engine:
                await db.dispose()

    app.cleanup_ctx.append(lifecycle)
    return app


def attached_gateway_app(gateway_of: Callable[[], Gateway]) -> web.Application:
    """The gateway `agentbot serve` runs beside the local executor; `gateway_of()` builds it
    from the started bot (its engine and GitHub client) when this app starts."""
    app, slot = _app()

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        slot.gateway = gateway_of()
        try:
            await slot.gateway.start(slot.gateway.settings.sandbox_listen_host,
                                     slot.gateway.settings.gateway_proxy_port)
            yield
        finally:
            await slot.gateway.close()
            slot.gateway = None

    app.cleanup_ctx.append(lifecycle)
    return app


def _add_routes(app: web.Application) -> None:
    """Health, the model providers (`/anthropic/...`, `/openai/...`) and git (`/git/...`)."""

    async def model(request: web.Request) -> web.StreamResponse:
        gateway = request.app[SLOT_KEY].get()
        provider = request.match_info["provider"]
        return await gateway.models.forward(request, provider,
                                            gateway.models.upstreams[provider])

    async def fetch(request: web.Request) -> web.StreamResponse:
        return await request.app[SLOT_KEY].get().git.handle(request)

    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_route("*", git.PREFIX + "/{tail:.*}", fetch)
    for method in ("GET", "POST"):
        app.router.add_route(method, "/{provider:anthropic|openai}/{tail:.*}", model)
