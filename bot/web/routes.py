"""The run pages: `/runs`, `/runs/{id}`, their assets, and the parts they are made of."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web
from sqlalchemy import desc, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.config.settings import Settings
from bot.report.reporter import load_gateway_records
from bot.runs.ledger import get_run
from bot.store.tables import ACTIVE_STATES, FINAL_STATES, RunState, aware, run_events, runs, utcnow
from bot.web import pages
from bot.web.changes import FilesCache, files_html, github_base_reader
from bot.web.live import LiveRoutes
from bot.web.oauth import Access, GitHubSignIn, GitHubUnavailable, TokenRevoked
from bot.web.pages import Answer, respond, secure_headers
from bot.web.session import SESSION_COOKIE, Sealer, Session, clear
from bot.web.signin import CALLBACK_PATH, SignInRoutes
from bot.web.stream import Hub
from bot.web.transcript import assemble, plan_html, sse

STATIC = Path(__file__).parent / "static"
PAGE_SIZE = 50
MAX_REPOS_CHECKED = 300  # the most recent repositories a list looks at
CHECKS_AT_ONCE = 8
NOT_FOUND_TITLE = "Not found"


class RunPages(SignInRoutes, LiveRoutes):
    """Everything the pages need, made once the public app has started."""

    def __init__(self, settings: Settings, engine: Callable[[], AsyncEngine | None],
                 github: Callable[[], Any], *, poll_seconds: float = 1.0) -> None:
        assert settings.github_client_id and settings.github_client_secret
        self.settings = settings
        self._engine = engine
        self._github = github
        self.poll_seconds = poll_seconds  # how often the live pages look for new events
        self.sealer = Sealer(settings.github_client_secret)
        self.secure = (settings.public_url or "").startswith("https://")
        self.web_url = settings.github_web_url
        self.session: aiohttp.ClientSession | None = None
        self.sign_in: GitHubSignIn | None = None
        self.access: Access | None = None
        self.hub: Hub | None = None
        self.files = FilesCache()

    async def lifecycle(self, app: web.Application) -> AsyncIterator[None]:
        engine = self._engine()
        if engine is None:
            raise RuntimeError("the run pages start after the bot")
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20))
        settings = self.settings
        self.sign_in = GitHubSignIn(self.session, settings.github_api_url, self.web_url,
                                    settings.github_client_id or "",
                                    settings.github_client_secret or "")
        self.access = Access(self.sign_in.can_read)
        self.hub = Hub(engine, self.poll_seconds, self._describe)
        yield
        await self.hub.close()
        await self.session.close()

    def add_routes(self, app: web.Application) -> None:
        app[PAGES_KEY] = self
        app.router.add_get("/login", self.login)
        app.router.add_get(CALLBACK_PATH, self.callback)
        app.router.add_post("/logout", self.logout)
        app.router.add_get("/runs", self.list_runs)
        app.router.add_get("/runs/{run_id}", self.run_page)
        app.router.add_get("/runs/{run_id}/events", self.events)
        app.router.add_get(pages.CSS_PATH, self.asset)
        app.router.add_get(pages.JS_PATH, self.asset)
        app.router.add_get(pages.ICON_PATH, self.asset)
        app.cleanup_ctx.append(self.lifecycle)

    @property
    def engine(self) -> AsyncEngine:
        return self._engine_now()

    def _engine_now(self) -> AsyncEngine:
        engine = self._engine()
        if engine is None:
            raise web.HTTPServiceUnavailable(text="not started")
        return engine

    # access

    async def _readable(self, request: web.Request, session: Session, repo: str) -> bool:
        assert self.access is not None
        try:
            return await self.access.can_read(session, repo)
        except TokenRevoked:
            self.access.forget(session.user_id)
            response = respond(pages.sign_in_page(
                request.path_qs, "Your GitHub sign-in has ended. Sign in again."), 401)
            clear(response, SESSION_COOKIE, self.secure)
            raise Answer(response) from None
        except GitHubUnavailable:
            raise Answer(respond(pages.message_page(
                "GitHub is unavailable", pages.UNAVAILABLE_TEXT, session), 503)) from None

    def _not_found(self, session: Session) -> web.Response:
        return respond(pages.message_page(NOT_FOUND_TITLE, pages.NOT_FOUND_TEXT, session),
                          404)

    async def _visible_run(self, request: web.Request) -> tuple[Session, Any] | web.Response:
        """The run if the person may see it; else the sign-in page or the same 404 as for a
        run that does not exist."""
        session = self.sealer.session(request)
        if session is None:
            return respond(pages.sign_in_page(request.path_qs), 200)
        try:
            run_id = int(request.match_info["run_id"])
        except ValueError:
            return self._not_found(session)
        if not 0 < run_id < 2**63:
            return self._not_found(session)
        run = await get_run(self.engine, run_id)
        if run is None or not await self._readable(request, session, run.repo_full_name):
            return self._not_found(session)
        return session, run

    # the run page

    async def run_page(self, request: web.Request) -> web.StreamResponse:
        try:
            found = await self._visible_run(request)
        except Answer as answer:
            return answer.response
        if isinstance(found, web.Response):
            return found
        session, run = found
        assert self.hub is not None
        now = utcnow()
        fragments = await self.hub.read(run.id, 0)
        plan = await self._plan(run.id)
        note = ""
        if not fragments:
            note = f'<p class="muted note-empty">{pages.NO_EVENTS_TEXT}</p>'
            if self._expired(run, now):
                note = f'<p class="flash">{pages.e(self._expired_text(run))}</p>'
        final = await self._final(run) if RunState(run.state) in FINAL_STATES else ""
        live = RunState(run.state) in ACTIVE_STATES
        html = pages.run_page(run, session, await self._header(run), plan, assemble(fragments),
                              final, fragments[-1].seq if fragments else 0, live, note)
        return respond(html, 200)

    async def _describe(self, run_id: int, final: bool) -> bytes:
        """The live pages' update when a run changed: its header, and its outcome at the end."""
        run = await get_run(self.engine, run_id)
        if run is None:
            return b""
        text = sse(await self._header(run), "run")
        return text + sse(await self._final(run), "end") if final else text

    async def _header(self, run: Any) -> str:
        usage, _ = await load_gateway_records(self.engine, run.id)
        return pages.run_header(run, usage, self.web_url, utcnow())

    async def _plan(self, run_id: int) -> str:
        async with self.engine.connect() as conn:
            data = (await conn.execute(
                select(run_events.c.data).where(run_events.c.run_id == run_id,
                                                run_events.c.kind == "todo")
                .order_by(desc(run_events.c.seq)).limit(1))).scalar()
        data = data if isinstance(data, dict) else {}
        items = data.get("items")
        more = data.get("more")
        return plan_html(items if isinstance(items, list) else [],
                         more if isinstance(more, int) else 0)

    async def _final(self, run: Any) -> str:
        files = self.files.get(run.id)
        if files is None:
            reader = None
            github = self._github()
            if github is not None and run.base_sha:
                reader = github_base_reader(github.installation(run.installation_id),
                                            run.repo_full_name, run.base_sha)
            files = await files_html(run.result or {}, reader)
            self.files.put(run.id, files)
        return pages.final_section(run, files)

    def _expired(self, run: Any, now: dt.datetime) -> bool:
        if run.finished_at is None:
            return False
        cutoff = now - dt.timedelta(seconds=self.settings.event_retention)
        return aware(run.finished_at) < cutoff

    def _expired_text(self, run: Any) -> str:
        days = self.settings.event_retention / 86400
        retention = f"{days:g} days" if days >= 1 else \
            f"{self.settings.event_retention // 3600} hours"
        ended = aware(run.finished_at).strftime("%Y-%m-%d")
        return pages.EXPIRED_TEXT.format(retention=retention, ended=ended)

    # the list

    async def list_runs(self, request: web.Request) -> web.StreamResponse:
        session = self.sealer.session(request)
        if session is None:
            return respond(pages.sign_in_page(request.path_qs), 200)
        repo = request.query.get("repo") or None
        state = request.query.get("state") or None
        before_text = request.query.get("before") or ""
        if state is not None and state != "active" and state not in set(RunState):
            return respond(pages.message_page("Bad filter", "There is no such state.",
                                                 session), 400)
        if before_text and (not (before_text.isascii() and before_text.isdigit())
                            or len(before_text) > 18):
            return respond(pages.message_page("Bad filter", "`before` is a run number.",
                                                 session), 400)
        async with self.engine.connect() as conn:
            # The repositories with the newest runs first, as many as are worth asking about.
            names = (await conn.execute(
                select(runs.c.repo_full_name).group_by(runs.c.repo_full_name)
                .order_by(desc(func.max(runs.c.id))).limit(MAX_REPOS_CHECKED))).scalars().all()
        try:
            readable = await self._filter_readable(request, session, sorted(names))
        except Answer as answer:
            return answer.response
        shown = [repo] if repo in readable else readable if repo is None else []
        rows: list[Any] = []
        if shown:
            query = select(runs).where(runs.c.repo_full_name.in_(shown))
            if state == "active":
                query = query.where(runs.c.state.in_([s.value for s in ACTIVE_STATES]))
            elif state:
                query = query.where(runs.c.state == state)
            if before_text:
                query = query.where(runs.c.id < int(before_text))
            async with self.engine.connect() as conn:
                rows = list((await conn.execute(
                    query.order_by(desc(runs.c.id)).limit(PAGE_SIZE + 1))).all())
        older = None
        if len(rows) > PAGE_SIZE:
            rows = rows[:PAGE_SIZE]
            params = {k: v for k, v in (("repo", repo), ("state", state)) if v}
            older = "/runs?" + urlencode({**params, "before": rows[-1].id})
        return respond(pages.runs_list(rows, session, readable, repo, state, older,
                                          utcnow()), 200)

    async def _filter_readable(self, request: web.Request, session: Session,
                               names: list[str]) -> list[str]:
        gate = asyncio.Semaphore(CHECKS_AT_ONCE)

        async def check(name: str) -> bool:
            async with gate:
                return await self._readable(request, session, name)

        answers = await asyncio.gather(*(check(n) for n in names), return_exceptions=True)
        for answer in answers:
            if isinstance(answer, Answer):
                raise answer
            if isinstance(answer, BaseException):
                raise answer
        return [name for name, ok in zip(names, answers, strict=True) if ok is True]

    # plumbing

    async def asset(self, request: web.Request) -> web.StreamResponse:
        name = request.path.rsplit("/", 1)[1]
        kind = {"css": "text/css", "js": "text/javascript",
                "svg": "image/svg+xml"}[name.rsplit(".", 1)[1]]
        response = web.Response(body=(STATIC / name).read_bytes(), content_type=kind,
                                charset="utf-8")
        response.headers["Cache-Control"] = "public, max-age=300"
        secure_headers(response)
        return response


def run_page_url(settings: Settings) -> Callable[[int], str | None]:
    """The address of a run's page for the check run and the status comment: none while
    sign-in is off, or without AGENTBOT_PUBLIC_URL to make it absolute."""
    if not settings.sign_in or not settings.public_url:
        return lambda run_id: None
    base = settings.public_url.rstrip("/")
    return lambda run_id: f"{base}/runs/{run_id}"


PAGES_KEY: web.AppKey[RunPages] = web.AppKey("run_pages", RunPages)
