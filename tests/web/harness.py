"""A started bot with sign-in on, the fake GitHub's OAuth, runs fed through the internal API."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.app import BOT_KEY, create_app
from bot.config.settings import Settings
from bot.runs import callbacks
from bot.runs.ledger import Created, NewRun, create_run, transition
from bot.store.tables import RunState
from bot.web.routes import PAGES_KEY
from tests.fakes.github import FakeGitHub

OWNER = "octo-org"
OPEN = f"{OWNER}/widgets"  # public: anyone signed in may read it
SECRET = f"{OWNER}/vault"  # private: its collaborators only
OTHER = "someone/else"  # private, not theirs, not even installed


class Pages:
    """The public app (with the run pages) and the internal API, as `serve` runs them."""

    def __init__(self, fake: FakeGitHub, settings: Settings) -> None:
        self.fake = fake
        self.settings = settings
        self.client: TestClient | None = None
        self.internal: TestServer | None = None
        self.key = callbacks.callback_key(settings.private_key_pem() or "")
        self._numbers = iter(range(1, 10_000))

    @classmethod
    def arrange(cls, fake: FakeGitHub) -> None:
        fake.add_installation(7, OWNER)
        fake.add_repo(OWNER, "widgets", files={"app.py": b"print('hello')\n"})
        fake.add_repo(OWNER, "vault", private=True)
        fake.add_collaborator(SECRET, "mona", "read")
        fake.add_repo("someone", "else", private=True)

    async def start(self, poll_seconds: float = 0.05) -> None:
        public = create_app(self.settings)
        self.run_pages = public[PAGES_KEY]
        self.run_pages.poll_seconds = poll_seconds
        self.client = TestClient(TestServer(public))
        await self.client.start_server()
        base = str(self.client.make_url("")).rstrip("/")
        self.fake.oauth_callback_urls = [f"{base}/login/callback"]
        internal = web.Application()
        callbacks.add_routes(internal, lambda: self.engine, self.key, _no_result, 1 << 20)
        self.internal = TestServer(internal)
        await self.internal.start_server()

    async def close(self) -> None:
        if self.internal is not None:
            await self.internal.close()
        if self.client is not None:
            await self.client.close()

    @property
    def engine(self) -> AsyncEngine:
        assert self.client is not None
        engine = self.client.server.app[BOT_KEY].engine  # type: ignore[union-attr]
        assert engine is not None
        return engine

    @property
    def base(self) -> str:
        assert self.client is not None
        return str(self.client.make_url("")).rstrip("/")

    # runs and their events

    async def add_run(self, repo: str = OPEN, state: RunState = RunState.RUNNING,
                      **values: Any) -> int:
        number = next(self._numbers)
        fields: dict[str, Any] = {
            "installation_id": 7, "repo_id": abs(hash(repo)) % 100_000 + 1,
            "repo_full_name": repo, "clone_url": f"https://github.com/{repo}.git",
            "number": number, "is_pull_request": False, "base_ref": "main",
            "trigger": "label", "sender_login": "octocat", "sender_id": 1,
            "delivery_id": str(uuid.uuid4()), "agent": "claude", "timeout_seconds": 600,
            "title": f"Fix the frobnicator {number}", "model": "claude-sonnet-4-5"}
        if repo in self.fake.state.repos:
            fields["base_sha"] = self.fake.state.repo(repo).git.resolve("main")
        fields.update(values)
        outcome = await create_run(self.engine, NewRun(**fields))
        assert isinstance(outcome, Created)
        if state is not RunState.QUEUED:
            assert await transition(self.engine, outcome.run_id, RunState.STARTING, "test")
        if state is not RunState.STARTING and state is not RunState.QUEUED:
            assert await transition(self.engine, outcome.run_id, RunState.RUNNING, "test")
        return outcome.run_id

    async def finish(self, run_id: int, state: RunState = RunState.SUCCEEDED,
                     **values: Any) -> None:
        assert await transition(self.engine, run_id, state, "test", **values)

    async def post_events(self, run_id: int, events: list[dict[str, Any]]) -> None:
        """Events as the sandbox sends them, through the internal API."""
        assert self.internal is not None
        now = dt.datetime.now(dt.UTC).isoformat()
        body = [{"ts": now, **event} for event in events]
        async with aiohttp.ClientSession() as session, session.post(
                str(self.internal.make_url(f"/internal/runs/{run_id}/events")), json=body,
                headers={"Authorization": "Bearer " + callbacks.run_token(self.key, run_id)}
        ) as response:
            assert response.status == 200, await response.text()

    # signing in, as a browser does

    async def sign_in(self, login: str, next_path: str = "/runs",
                      client: TestClient | None = None) -> aiohttp.ClientResponse:
        """Through the fake GitHub's OAuth pages; the last response (the bot's) is returned."""
        client = client or self.client
        assert client is not None
        self.fake.oauth_login = login
        first = await client.get("/login", params={"next": next_path}, allow_redirects=False)
        assert first.status == 302, await first.text()
        at_github = await client.session.get(first.headers["Location"], allow_redirects=False)
        assert at_github.status == 302, await at_github.text()
        back = at_github.headers["Location"]
        assert urlsplit(back).path == "/login/callback"
        return await client.session.get(back, allow_redirects=False)


async def _no_result(run_id: int, result: callbacks.Result) -> None:
    return None


def settings_for(fake: FakeGitHub, make_settings: Callable[..., Settings],
                 **overrides: Any) -> Settings:
    return make_settings(github_api_url=fake.url, github_app_id=fake.app_id,
                         github_private_key=fake.private_key_pem,
                         github_client_id=fake.oauth_client_id,
                         github_client_secret=fake.oauth_client_secret, **overrides)
