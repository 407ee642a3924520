"""Helpers for the sandbox tests: a git smart-HTTP server, a callback recorder, repo fixtures."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.executors.base import RunSpec, SandboxLimits

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parents[1] / "data"
SCRIPTED_AGENT = DATA / "sandbox" / "scripted_agent.py"
GATEWAY_TOKEN = "agw_7_TestGatewayCredential0123456789abcdefghijkl"
CALLBACK_TOKEN = "cbt_RunCallbackToken_9876543210fedcba"
RUN_ID = 12
# What the scripted agent writes to assets/blob.bin, restated here so the test checks it.
BINARY_CONTENT = bytes(range(256)) + b"\x00\xff\x00PNG\r\n\x1a\n" * 3

INITIAL_FILES: dict[str, tuple[bytes, int]] = {
    "README.md": (b"# Demo\n\nHello.\n", 0o644),
    "old.txt": (b"to be deleted\n", 0o644),
    "keep.txt": (b"unchanged\n", 0o644),
    "scripts/run.sh": (b"#!/bin/sh\necho run\n", 0o644),
    "docs/a.md": (b"moved content\n", 0o644),
    ".gitignore": (b"*.log\n", 0o644),
}


def git(cwd: Path, *args: str) -> str:
    """Run git for fixtures (synchronously: fixtures run before the loop serves anything)."""
    env = {"PATH": os.environ["PATH"], "HOME": str(cwd), "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, check=True)
    return done.stdout.decode().strip()


def make_repository(root: Path) -> tuple[Path, str]:
    """A bare repository `demo.git` under `root` with one commit on main; (bare path, SHA)."""
    work = root / "work"
    work.mkdir(parents=True)
    git(work, "init", "-q", "-b", "main")
    for path, (content, mode) in INITIAL_FILES.items():
        target = work / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)
        target.chmod(mode)
    git(work, "add", "-A")
    git(work, "commit", "-qm", "initial")
    sha = git(work, "rev-parse", "HEAD")
    bare = root / "demo.git"
    git(root, "clone", "-q", "--bare", str(work), str(bare))
    return bare, sha


class GitHttpServer:
    """`git http-backend` behind aiohttp, refusing any request without the token header."""

    def __init__(self, project_root: Path, token: str) -> None:
        self.project_root = project_root
        self.expected = "Basic " + base64.b64encode(f"x-access-token:{token}".encode()).decode()
        self.requests: list[tuple[str, str, bool]] = []  # method, path, authorized

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.Response:
        authorized = request.headers.get("Authorization") == self.expected
        self.requests.append((request.method, request.path, authorized))
        if not authorized:
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="git"'})
        body = await request.read()  # aiohttp has already undone any Content-Encoding
        env = {
            "PATH": os.environ["PATH"], "GIT_PROJECT_ROOT": str(self.project_root),
            "GIT_HTTP_EXPORT_ALL": "1", "PATH_INFO": request.path,
            "REQUEST_METHOD": request.method, "QUERY_STRING": request.query_string,
            "CONTENT_TYPE": request.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)), "REMOTE_ADDR": "127.0.0.1",
            "GIT_PROTOCOL": request.headers.get("Git-Protocol", ""),
        }
        process = await asyncio.create_subprocess_exec(
            "git", "http-backend", env=env, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, _err = await process.communicate(body)
        head, _, payload = out.partition(b"\r\n\r\n")
        status, headers = 200, {}
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers[name] = value.strip()
        return web.Response(status=status, headers=headers, body=payload)


@dataclass
class CallbackRecorder:
    """The bot's internal API as the sandbox sees it: records events and results."""

    token: str = CALLBACK_TOKEN
    result_statuses: list[int] = field(default_factory=list)  # answers before a 200
    events: list[dict[str, Any]] = field(default_factory=list)
    event_bodies: list[Any] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)
    result_attempts: int = 0
    unauthorized: int = 0
    session_to_give: bytes | None = None  # the earlier run's session, for GET /session
    sessions: list[bytes] = field(default_factory=list)  # what the sandbox PUT
    session_gets: int = 0

    def app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/internal/runs/{run_id}/events", self.post_events)
        app.router.add_put("/internal/runs/{run_id}/result", self.put_result)
        app.router.add_get("/internal/runs/{run_id}/session", self.get_session)
        app.router.add_put("/internal/runs/{run_id}/session", self.put_session)
        return app

    async def get_session(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.Response(status=401)
        self.session_gets += 1
        if self.session_to_give is None:
            return web.json_response({"message": "this run resumes no session"}, status=404)
        return web.Response(body=self.session_to_give, content_type="application/gzip")

    async def put_session(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.Response(status=401)
        self.sessions.append(await request.read())
        return web.json_response({"stored": True})

    def _authorized(self, request: web.Request) -> bool:
        ok = request.headers.get("Authorization") == f"Bearer {self.token}"
        self.unauthorized += not ok
        return ok

    async def post_events(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.Response(status=401)
        body = await request.json()
        self.event_bodies.append(body)
        self.events.extend(body if isinstance(body, list) else [body])
        return web.json_response({"stored": True}, status=202)

    async def put_result(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.Response(status=401)
        self.result_attempts += 1
        body = await request.json()
        if self.result_statuses:
            return web.Response(status=self.result_statuses.pop(0))
        self.results.append(body)
        return web.json_response({"stored": True})

    def kinds(self, kind: str) -> list[dict[str, Any]]:
        """The data of every received event of one kind, in sequence order."""
        ordered = sorted(self.events, key=lambda e: e["seq"])
        return [e["data"] for e in ordered if e["kind"] == kind]


def make_spec(*, clone_url: str, callback_url: str, base_sha: str, prompt: str = "mode: edit",
              setup: list[str] | None = None, timeout: int = 60, setup_timeout: int = 30,
              agent: str = "command", agent_command: list[str] | None = None,
              max_changed_files: int = 100, max_result_bytes: int = 10_000_000) -> RunSpec:
    """A RunSpec as the bot builds it, running the scripted agent by default."""
    return RunSpec(
        run_id=RUN_ID, repository="octo/demo", clone_url=clone_url, base_ref="main",
        base_sha=base_sha, branch=f"agentbot/run-{RUN_ID}", prompt=prompt, agent=agent,
        model=None, setup=setup or [], callback_url=callback_url,
        limits=SandboxLimits(timeout_seconds=timeout, setup_timeout_seconds=setup_timeout,
                             max_changed_files=max_changed_files,
                             max_result_bytes=max_result_bytes),
        agent_command=agent_command or [sys.executable, str(SCRIPTED_AGENT), "{prompt_file}"],
        installation_id=7,
    )


def write_spec_dir(directory: Path, spec: RunSpec | dict[str, Any], *,
                   gateway_token: str = GATEWAY_TOKEN,
                   callback_token: str = CALLBACK_TOKEN) -> Path:
    """spec.json and the token files, as the executors write them."""
    directory.mkdir(parents=True, exist_ok=True)
    data = spec.to_json_dict() if isinstance(spec, RunSpec) else spec
    (directory / "spec.json").write_text(json.dumps(data), encoding="utf-8")
    for name, value in (("gateway-token", gateway_token), ("callback-token", callback_token)):
        (directory / name).write_text(value + "\n", encoding="utf-8")
        (directory / name).chmod(0o600)
    return directory


@dataclass
class RunnerOutcome:
    """How one `python -m sandbox` ended."""

    returncode: int
    stdout: str
    stderr: str
    termination: str | None
    report: dict[str, Any] | None


def runner_env(tmp: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The runner's environment: only what a Job would give it, plus the test's knobs."""
    (tmp / "home").mkdir(exist_ok=True)
    (tmp / "tmp").mkdir(exist_ok=True)
    return {
        "PATH": os.environ["PATH"], "HOME": str(tmp / "home"), "TMPDIR": str(tmp / "tmp"),
        "LANG": "C.UTF-8", "PYTHONPATH": str(ROOT),
        "AGENTBOT_SPEC_DIR": str(tmp / "spec"), "AGENTBOT_WORKSPACE": str(tmp / "workspace"),
        "AGENTBOT_TERMINATION_LOG": str(tmp / "termination-log"),
        "SCRIPTED_AGENT_REPORT": str(tmp / "agent-report.json"),
        "OPERATOR_AGENT_API_KEY": "sk-operator-key-for-the-agent",
        **(extra or {}),
    }


async def start_sandbox(tmp: Path, spec: RunSpec | dict[str, Any], *,
                        gateway_token: str = GATEWAY_TOKEN, env: dict[str, str] | None = None
                        ) -> asyncio.subprocess.Process:
    """Write the spec files and start the real runner as a subprocess."""
    write_spec_dir(tmp / "spec", spec, gateway_token=gateway_token)
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sandbox", cwd=tmp, env=runner_env(tmp, env),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)


async def run_sandbox(tmp: Path, spec: RunSpec | dict[str, Any], *, limit: float = 60,
                      gateway_token: str = GATEWAY_TOKEN, env: dict[str, str] | None = None
                      ) -> RunnerOutcome:
    """Run the real runner to its end without blocking the loop; what it left behind."""
    process = await start_sandbox(tmp, spec, gateway_token=gateway_token, env=env)
    out, err = await asyncio.wait_for(process.communicate(), limit)
    termination = tmp / "termination-log"
    report = tmp / "agent-report.json"
    return RunnerOutcome(
        returncode=process.returncode if process.returncode is not None else -1,
        stdout=out.decode(), stderr=err.decode(),
        termination=termination.read_text() if termination.exists() else None,
        report=json.loads(report.read_text()) if report.exists() else None,
    )


@dataclass
class Site:
    """The loopback world of one test: git server, bot double and the run's base commit."""

    git: GitHttpServer
    bot: CallbackRecorder
    clone_url: str
    callback_url: str
    base_sha: str
    tmp: Path

    def spec(self, **overrides: Any) -> RunSpec:
        """A spec for this site's repository and bot; keywords as for `make_spec`."""
        return make_spec(clone_url=self.clone_url, callback_url=self.callback_url,
                         base_sha=self.base_sha, **overrides)


async def make_site(tmp_path: Path, aiohttp_server: Any) -> Site:
    """A repository served over HTTP on loopback and a recording bot, both real aiohttp
    (`aiohttp_server` is pytest-aiohttp's fixture, which also shuts them down)."""
    bare, sha = make_repository(tmp_path / "git")
    git = GitHttpServer(bare.parent, GATEWAY_TOKEN)
    bot = CallbackRecorder()
    git_server: TestServer = await aiohttp_server(git.app())
    bot_server: TestServer = await aiohttp_server(bot.app())
    return Site(git, bot, str(git_server.make_url("/demo.git")),
                str(bot_server.make_url(f"/internal/runs/{RUN_ID}")), sha, tmp_path / "run")


def b64(data: bytes) -> str:
    """Base64 text, as the result carries file contents."""
    return base64.b64encode(data).decode()
