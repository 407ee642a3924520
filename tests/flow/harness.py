"""One agentbot, as `serve` runs it, against the fake GitHub, with the real sandbox runner."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from bot.app import BOT_KEY, Bot, create_app, gateway_app, internal_app
from bot.config.settings import Settings
from bot.executors.local import LocalExecutor
from bot.executors.local_runs import RunStore
from bot.runs.ledger import get_run
from bot.store.tables import FINAL_STATES, RunState, run_transitions, runs
from sandbox import sessions
from tests.conftest import WEBHOOK_SECRET
from tests.fakes import payloads as p
from tests.fakes.github import FakeGitHub
from tests.ports import stable_port
from tests.runs.test_scheduler import GitHubGit

REPO = f"{p.OWNER}/{p.REPO}"
AGENT = Path(__file__).with_name("agent.py")
FILES = {"README.md": b"# hello\n", "src/app.py": b"print('hello')\n",
         "docs/old.md": b"old\n"}


async def until(check: Callable[[], Awaitable[bool]], seconds: float = 60.0,
                what: str = "the condition") -> None:
    """Poll `check` (the bot works in background tasks) until it holds."""
    for _ in range(int(seconds / 0.05)):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{what} never came true")


class Flow:
    """Signed webhooks in; a local-executor sandbox runs the scripted agent; GitHub state out."""

    def __init__(self, fake: FakeGitHub, tmp: Path, settings: Settings,
                 git_server: TestServer) -> None:
        self.fake, self.tmp, self.settings = fake, tmp, settings
        self.git_url = str(git_server.make_url(f"/{REPO}.git"))
        self.plan_file = tmp / "plan.json"
        self.logs = tmp / "agent-logs"
        self.logs.mkdir(exist_ok=True)
        self.client: TestClient | None = None
        self.internal: TestServer | None = None
        self.gateway: TestServer | None = None
        # Builds each process's executor; the local one unless a test swaps it.
        self.make_executor: Callable[[], Any] = self._local_executor
        # The public port; a fixed one lets the fake GitHub reach the bot across restarts.
        self.public_port: int = stable_port()  # the same after a restart
        self.plan()

    @classmethod
    async def create(cls, fake: FakeGitHub, tmp: Path, make_settings: Callable[..., Settings],
                     database_url: str, **overrides: Any) -> Flow:
        fake.add_installation(p.INSTALLATION_ID, p.OWNER)
        fake.add_repo(p.OWNER, p.REPO, repo_id=p.REPO_ID, files=FILES)
        fake.add_issue(REPO, p.ISSUE_NUMBER, title="Add a greeting", body="Say hi.")
        fake.add_collaborator(REPO, "octocat", "maintain")
        git_server = TestServer(GitHubGit(fake).app())
        await git_server.start_server()
        plan, logs = tmp / "plan.json", tmp / "agent-logs"
        settings = make_settings(
            database_url=database_url, github_api_url=fake.url,
            github_app_id=fake.app_id, github_private_key=fake.private_key_pem,
            internal_port=stable_port(), default_agent="command",
            agent_command=f"{sys.executable} {AGENT} {{prompt_file}} {plan} {logs}",
            **overrides)
        flow = cls(fake, tmp, settings, git_server)
        flow._git_server = git_server
        return flow

    # --- the bot's life ----------------------------------------------------------------------

    def _local_executor(self) -> LocalExecutor:
        return LocalExecutor(state_dir=self.tmp / "state", run_root=self.tmp / "runs",
                             env={"PATH": os.environ["PATH"], "LANG": "C.UTF-8"},
                             bwrap=False, kill_grace_seconds=2.0)

    async def start(self) -> None:
        public = create_app(self.settings, executor=self.make_executor())
        self.client = TestClient(TestServer(public, port=self.public_port))
        await self.client.start_server()
        # As `serve` does with the local executor: the sandboxes' gateway in the same process.
        self.gateway = TestServer(gateway_app(public), port=self.settings.gateway_port)
        await self.gateway.start_server()
        self.internal = TestServer(internal_app(public), port=self.settings.internal_port)
        await self.internal.start_server()
        self.bot.reporter.ticker.seconds = 0.2  # the tests should not idle for seconds

    async def stop(self) -> None:
        """Stop everything the process runs, as a crash would; sandboxes keep running."""
        if self.internal is not None:
            await self.internal.close()
        if self.gateway is not None:
            await self.gateway.close()
        if self.client is not None:
            await self.client.close()
        self.internal = self.gateway = self.client = None
        self.fake.release()

    async def close(self) -> None:
        await self.stop()
        await self._git_server.close()
        await self._end_left_sandboxes()

    async def _end_left_sandboxes(self) -> None:
        """Kill the local sandboxes a test left running (stop() leaves them for a restart to
        adopt, and at the end nothing will): a sandbox must not outlive its test, and its
        process object must not be collected while the process runs (a ResourceWarning,
        which the suite turns into an error in whichever test the collector runs in)."""
        records = RunStore(self.tmp / "state").load_all()
        for record in records:
            sessions.signal_session(record.pid, record.start_ticks, signal.SIGKILL)

        async def ended() -> bool:
            return not any(sessions.alive(r.pid, r.start_ticks) for r in records)

        await until(ended, 20.0, what="the sandboxes left running to end")
        await asyncio.sleep(0.1)  # the child watcher reports the exits to their transports

    @property
    def bot(self) -> Bot:
        assert self.client is not None
        app = self.client.server.app
        assert isinstance(app, web.Application)
        return app[BOT_KEY]

    # --- input ---------------------------------------------------------------------------------

    def plan(self, **plan: Any) -> None:
        """What the scripted agent does in the next runs."""
        self.plan_file.write_text(json.dumps(plan))

    async def deliver(self, event: str, data: dict[str, Any]) -> str:
        data["repository"]["clone_url"] = self.git_url
        issue = data.get("issue")
        found = self.fake.state.issues.get((REPO, issue["number"])) if issue else None
        if issue and found is not None:  # the payload tells the issue as the fake has it
            issue.update(title=found.title, body=found.body)
        delivery_id = str(uuid.uuid4())
        body = p.encode(data)
        assert self.client is not None
        response = await self.client.post(
            "/webhook", data=body,
            headers=p.webhook_headers(event, delivery_id, body,
                                      self.settings.github_webhook_secret or WEBHOOK_SECRET))
        assert response.status == 202, await response.text()
        return delivery_id

    async def comment(self, body: str, *, number: int = p.ISSUE_NUMBER,
                      login: str = "octocat", on_pull_request: bool = False) -> str:
        made = self.fake.add_comment(REPO, number, body, user=login)
        return await self.deliver("issue_comment", p.issue_comment(
            body, login=login, number=number, comment_id=made.id,
            on_pull_request=on_pull_request))

    # --- output --------------------------------------------------------------------------------

    async def runs(self) -> list[Any]:
        async with self.bot.engine.connect() as conn:  # type: ignore[union-attr]
            return list((await conn.execute(select(runs).order_by(runs.c.id))).all())

    async def run(self, run_id: int) -> Any:
        assert self.bot.engine is not None
        return await get_run(self.bot.engine, run_id)

    async def wait_for_run(self, count: int = 1) -> Any:
        async def made() -> bool:
            return len(await self.runs()) >= count

        await until(made, what=f"run {count}")
        return (await self.runs())[count - 1]

    async def settled(self, run_id: int, seconds: float = 60.0) -> Any:
        """The run once it is final and its final state is reported on GitHub."""
        async def done() -> bool:
            run = await self.run(run_id)
            return (RunState(run.state) in FINAL_STATES
                    and run.last_reported_state == run.state)

        await until(done, seconds, what=f"run {run_id} settling")
        return await self.run(run_id)

    async def transitions(self, run_id: int) -> list[str]:
        assert self.bot.engine is not None
        async with self.bot.engine.connect() as conn:
            return list((await conn.execute(
                select(run_transitions.c.to_state).where(run_transitions.c.run_id == run_id)
                .order_by(run_transitions.c.id))).scalars().all())

    def prompt(self, index: int = 0) -> str:
        return (self.logs / f"prompt-{index}.txt").read_text()

    def agent_started(self, index: int = 0) -> bool:
        return (self.logs / f"pid-{index}").exists()

    def check_runs(self) -> list[Any]:
        return self.fake.check_runs(REPO)

    def status_comments(self, number: int = p.ISSUE_NUMBER) -> list[Any]:
        return [c for c in self.fake.comments(REPO, number)
                if c.via_app and "agentbot:status_comment:" in c.body]

    def replies(self, number: int = p.ISSUE_NUMBER) -> list[str]:
        return [c.body for c in self.fake.comments(REPO, number)
                if c.via_app and "agentbot:status_comment:" not in c.body]

    def pulls(self) -> list[Any]:
        return [i for i in self.fake.pulls(REPO)]

    def branches(self) -> dict[str, str]:
        refs = self.fake.repo(REPO).git.refs
        return {name.removeprefix("refs/heads/"): sha for name, sha in refs.items()
                if name.startswith("refs/heads/")}

    def files(self, ref: str) -> dict[str, bytes]:
        return {path: data for path, (_mode, data) in self.fake.files(REPO, ref).items()}

    def modes(self, ref: str) -> dict[str, str]:
        return {path: mode for path, (mode, _data) in self.fake.files(REPO, ref).items()}

    def github_writes(self) -> list[str]:
        return [r.operation or f"{r.method} {r.path}" for r in self.fake.requests
                if r.method != "GET"]
