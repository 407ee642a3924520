"""create_app: the public and internal aiohttp apps, their routes, start-up and clean-up."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import ClientSession, ClientTimeout, web
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.commands.context import Context, GitHubClients
from bot.commands.expiry import ApprovalExpiry
from bot.commands.permissions import Permissions
from bot.config.loader import RepoConfigs
from bot.config.settings import Settings
from bot.intake import webhook
from bot.intake.inbox import Inbox, InboxOptions
from bot.intake.redeliver import Redeliverer, RedeliverOptions
from bot.intake.router import handled_events, router
from bot.intake.writer import DeliveryRow, DeliveryWriter, StoreUnavailable
from bot.metrics import Metrics
from bot.metrics import handler as metrics_handler
from bot.redact import register_secret
from bot.runs import leases, ledger
from bot.store import migrate, probe
from bot.store.tables import create_engine, utcnow

log = logging.getLogger(__name__)

READY_DB_TIMEOUT = 2.0
IDENTIFY_TIMEOUT = 5.0

SETUP_MODE_LOG = (
    "agentbot is in setup mode: GITHUB_APP_ID, GITHUB_PRIVATE_KEY(_PATH) and "
    "GITHUB_WEBHOOK_SECRET are unset. Open this server's / page (or run `agentbot setup`) to "
    "create the GitHub App from app-manifest.yml; its credentials go to .env and agentbot "
    "starts with them. Until then /webhook answers 503."
)

HealthCheck = Callable[[], str | None]


@dataclass
class Bot:
    """The parts of one agentbot process, built by create_app and started with the app."""

    settings: Settings
    engine: AsyncEngine | None = None
    github: GitHubClients | None = None
    session: ClientSession | None = None
    writer: DeliveryWriter | None = None
    inbox: Inbox | None = None
    context: Context | None = None
    executor: Any = None
    scheduler: Any = None  # bot.runs.scheduler.Scheduler, launched by the internal app
    reporter: Any = None  # bot.report.reporter.Reporter, started with the scheduler
    redeliverer: Redeliverer | None = None  # asks GitHub again for failed deliveries
    approval_expiry: ApprovalExpiry | None = None  # ends requests nobody approved in time
    gateway: Any = None  # bot.gateway.app.Gateway, when this process runs one (gateway_app)
    health_checks: list[HealthCheck] = field(default_factory=list)
    inbox_options: InboxOptions = field(default_factory=InboxOptions)
    metrics: Metrics = field(init=False)

    def __post_init__(self) -> None:
        # GitHub also sends `ping` when the webhook is made or edited.
        self.metrics = Metrics(handled_events() | {"ping"}, executor=lambda: self.executor)

    def observe_finished(self, engine: AsyncEngine, state: Any, seconds: float) -> None:
        """ledger.FINISHED_OBSERVERS: only this bot's database (tests run several bots)."""
        if engine is self.engine:
            self.metrics.run_finished(state, seconds)


BOT_KEY: web.AppKey[Bot] = web.AppKey("bot", Bot)


def _make_github(bot: Bot, session: ClientSession) -> GitHubClients:
    from bot.github.client import GitHubApp
    from bot.github.pacing import WriteBudget, WriteLimits

    settings = bot.settings
    limits = WriteLimits(per_minute=settings.github_writes_per_minute,
                         per_hour=settings.github_writes_per_hour)
    return GitHubApp.from_settings(settings, session, on_response=bot.metrics.github_response,
                                   writes=WriteBudget(limits))


async def start_bot(bot: Bot) -> None:
    """Open the database (migrated), the GitHub session and the workers.

    The executor and the scheduler start with the internal app (the sandboxes' way back):
    `agentbot receive` and handler tests queue runs without launching them.
    """
    settings = bot.settings
    if bot.engine is None:
        bot.engine = create_engine(settings.database_url)
    await migrate.upgrade(bot.engine)
    if bot.github is None:
        bot.session = ClientSession(timeout=ClientTimeout(total=30))
        bot.github = _make_github(bot, bot.session)
    await _identify(bot.github)

    def run_changed() -> None:
        if bot.scheduler is not None:
            bot.scheduler.notify()
        if bot.reporter is not None:
            bot.reporter.notify()
        if bot.gateway is not None:
            bot.gateway.run_changed()

    bot.context = Context(
        settings=settings, db=bot.engine, github=bot.github, permissions=Permissions(),
        app_login=getattr(bot.github, "app_login", None),
        on_run_change=run_changed, configs=RepoConfigs(bot.github),
        on_limit=lambda limit: bot.metrics.triggers_refused.labels(limit).inc(),
    )
    bot.inbox = Inbox(bot.engine, router, bot.context, bot.inbox_options)
    if bot.engine.dialect.name == "sqlite":
        # One process owns an SQLite file, so anything in flight was abandoned by a crash.
        released = await bot.inbox.release_abandoned()
        if released:
            log.info("re-queued %d deliveries abandoned by the previous process", released)
        if await leases.release_all(bot.engine):
            log.info("freed the run leases the previous process held")
    bot.writer = DeliveryWriter(bot.engine, on_stored=bot.inbox.notify)
    bot.writer.start()
    bot.inbox.start()
    bot.approval_expiry = ApprovalExpiry(bot.engine, settings.approval_ttl,
                                         on_change=run_changed)
    bot.approval_expiry.start()
    app_client = getattr(bot.github, "app_client", None)
    if settings.redeliver_interval and app_client is not None:
        metrics = bot.metrics
        bot.redeliverer = Redeliverer(
            bot.engine, app_client, RedeliverOptions(interval=settings.redeliver_interval),
            on_outcome=lambda outcome: metrics.redeliveries.labels(outcome).inc())
        bot.redeliverer.start()

    def inbox_alive() -> str | None:
        inbox = bot.inbox
        if inbox is None or inbox._task is None or inbox._task.done():
            return "the dispatch worker is not running"
        stale = dt.timedelta(seconds=bot.inbox_options.lease_seconds)
        if inbox.alive_at is not None and utcnow() - inbox.alive_at > stale:
            return "the dispatch worker is stuck"
        return None

    def scheduler_alive() -> str | None:
        scheduler = bot.scheduler
        if scheduler is None:
            return None  # this process does not launch runs (no internal app)
        return scheduler.health()

    def reporter_alive() -> str | None:
        return None if bot.reporter is None else bot.reporter.health()

    def redeliverer_alive() -> str | None:
        return None if bot.redeliverer is None else bot.redeliverer.health()

    def expiry_alive() -> str | None:
        return None if bot.approval_expiry is None else bot.approval_expiry.health()

    bot.health_checks.extend([inbox_alive, scheduler_alive, reporter_alive, redeliverer_alive,
                              expiry_alive])


async def _identify(github: Any) -> None:
    """Learn the App's own login, so that its comments never trigger it.

    A GitHub that does not answer must not keep the bot from starting: its own comments
    are still a Bot's, ignored unless a repository lists the App in `allowed_bots`.
    """
    identify = getattr(github, "identify", None)
    if identify is None:
        return  # a dry run's recording client: no request leaves
    try:
        async with asyncio.timeout(IDENTIFY_TIMEOUT):
            await identify()
    except Exception as exc:  # noqa: BLE001 - any failure only delays knowing our name
        log.warning("could not read the App's own login (%s); carrying on",
                    type(exc).__name__)


async def stop_bot(bot: Bot) -> None:
    """Stop the workers and the scheduler, then release the executor, session and database."""
    if bot.scheduler is not None:
        await bot.scheduler.close()
    if bot.reporter is not None:
        await bot.reporter.close()
    if bot.redeliverer is not None:
        await bot.redeliverer.close()
    if bot.approval_expiry is not None:
        await bot.approval_expiry.close()
    if bot.writer is not None:
        await bot.writer.close()
    if bot.inbox is not None:
        await bot.inbox.close()
    if bot.executor is not None:
        await bot.executor.close()
    if bot.session is not None:
        await bot.session.close()
    if bot.engine is not None:
        await bot.engine.dispose()


async def healthz(request: web.Request) -> web.Response:
    """Alive: the process answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Ready: the database takes writes and every worker and watch loop is alive."""
    bot = request.app[BOT_KEY]
    problems: list[str] = []
    if bot.settings.setup_mode:
        problems.append("setup mode: no GitHub App configured")
    elif bot.engine is None:
        problems.append("not started")
    else:
        # A database that answers but refuses writes (another process holds SQLite's write
        # lock, PostgreSQL is read-only) stores no delivery: not ready either.
        if problem := await probe.write_problem(bot.engine, READY_DB_TIMEOUT):
            problems.append(problem)
    problems.extend(p for check in bot.health_checks if (p := check()))
    if problems:
        return web.json_response({"status": "unavailable", "problems": problems}, status=503)
    return web.json_response({"status": "ok"})


def create_app(settings: Settings, *, github: GitHubClients | None = None,
               executor: Any = None, engine: AsyncEngine | None = None,
               inbox_options: InboxOptions | None = None) -> web.Application:
    """The public app (webhook, health); its internal twin is `internal_app(app)`."""
    bot = Bot(settings=settings, github=github, executor=executor, engine=engine,
              inbox_options=inbox_options or InboxOptions())
    # The body is read in chunks and capped by the handler itself (413 without buffering).
    app = web.Application(client_max_size=webhook.MAX_BODY_BYTES + 1)
    app[BOT_KEY] = bot
    app[webhook.WEBHOOK_SECRET_KEY] = settings.github_webhook_secret
    app[webhook.UNVERIFIED_KEY] = webhook.UnverifiedBytes()
    if settings.github_webhook_secret:
        register_secret(settings.github_webhook_secret)

    async def store(row: DeliveryRow) -> None:
        if bot.writer is None:
            raise StoreUnavailable("not started")
        await bot.writer.store(row)

    app[webhook.STORE_KEY] = store
    app[webhook.OBSERVE_KEY] = bot.metrics.observe_delivery
    app.router.add_post("/webhook", webhook.handle_webhook)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)

    if settings.setup_mode:
        from bot.setup import page

        log.warning(SETUP_MODE_LOG)
        page.add_routes(app, page.SetupFlow(api_url=settings.github_api_url,
                                                        public_url=settings.public_url))
        return app

    async def lifecycle(app: web.Application) -> Any:
        ledger.FINISHED_OBSERVERS.append(bot.observe_finished)
        try:
            await start_bot(bot)
            yield
            await stop_bot(bot)
        finally:
            ledger.FINISHED_OBSERVERS.remove(bot.observe_finished)

    app.cleanup_ctx.append(lifecycle)
    from bot.web import retention  # transcripts expire whether or not the pages are on

    app.cleanup_ctx.append(retention.keeping(lambda: bot.engine, settings.event_retention,
                                             bot.health_checks,
                                             session_dir=settings.session_dir))
    if settings.sign_in:  # the run pages, behind GitHub sign-in (after `lifecycle`: its engine)
        from bot.web.routes import RunPages

        RunPages(settings, lambda: bot.engine, lambda: bot.github).add_routes(app)
    return app


def internal_app(public: web.Application) -> web.Application:
    """The internal port's app: sandbox callbacks and metrics, sharing the public app's Bot.

    Start it after the public app (as `serve` does): its start-up launches the scheduler,
    since runs may only start where their sandboxes can call back.
    """
    from bot.runs import callbacks

    bot = public[BOT_KEY]
    settings = bot.settings
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[BOT_KEY] = bot
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_handler(bot.metrics, lambda: bot.engine))

    def engine() -> AsyncEngine:
        if bot.engine is None:
            raise RuntimeError("the public app has not started")
        return bot.engine

    async def on_result(run_id: int, result: callbacks.Result) -> None:
        if bot.scheduler is not None:
            await bot.scheduler.on_result(run_id, result)

    # Base64 makes the changeset's bytes a third larger; the rest is JSON around it.
    result_limit = settings.max_result_bytes * 4 // 3 + 1024 * 1024
    callbacks.add_routes(app, engine, callbacks.callback_key(settings.private_key_pem() or ""),
                         on_result, result_limit, session_limit=settings.session_max_bytes,
                         session_dir=settings.session_dir)

    async def launching(app: web.Application) -> Any:
        from bot.report.reporter import Reporter
        from bot.runs.scheduler import Scheduler, make_executor

        if bot.engine is None or bot.github is None:
            raise RuntimeError("start the public app before the internal one")
        if bot.executor is None:
            bot.executor = make_executor(settings)
        from bot.web.routes import run_page_url

        bot.reporter = Reporter(bot.engine, bot.github, run_url=run_page_url(settings))
        reporter = bot.reporter

        def run_changed() -> None:
            reporter.notify()
            if bot.gateway is not None:
                bot.gateway.run_changed()

        bot.scheduler = Scheduler(bot.engine, bot.executor, bot.github,
                                  settings, on_change=run_changed)
        bot.reporter.start()
        await bot.scheduler.start()
        yield
        await bot.scheduler.close()
        await bot.reporter.close()

    app.cleanup_ctx.append(launching)
    return app


def gateway_app(public: web.Application) -> web.Application:
    """The gateway, in this process, sharing the public app's database and GitHub client:
    what `serve` runs beside the local executor. Start it after the public app and before
    the internal one, so it answers before the first sandbox starts."""
    from bot.gateway.app import Gateway, attached_gateway_app

    bot = public[BOT_KEY]

    def make() -> Gateway:
        if bot.engine is None or bot.github is None:
            raise RuntimeError("start the public app before the gateway")
        bot.gateway = Gateway(bot.settings, bot.engine, bot.github)  # type: ignore[arg-type]
        return bot.gateway

    return attached_gateway_app(make)
