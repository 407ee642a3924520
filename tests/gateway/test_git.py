"""The gateway's git proxy: real clones and fetches through it, and everything it refuses."""

from __future__ import annotations

import asyncio
import base64
import gzip
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from bot.gateway.credentials import gateway_key, issue
from bot.gateway.git import (
    BAD_NAME,
    FETCH_ONLY,
    NOT_FOUND,
    NOT_THIS_REPOSITORY,
    REALM,
    TIMED_OUT,
    TOO_LARGE,
    UNREACHABLE,
    GitProxy,
    add_routes,
)
from bot.gateway.grants import Grant
from sandbox.checkout import checkout
from tests.gateway.support import MemoryAudit, StaticGrants
from tests.sandbox.support import GitHttpServer, git

RUN_ID = 31
REPO = "octo/demo"
# Not shaped like a GitHub token on purpose: the log records redact those when they are made,
# which would hide a leak from these tests.
INSTALLATION_TOKEN = "inst-read-only-Q7zP2mK9vL4xN8cR3tY6"
KEY = gateway_key("gateway test key")
CREDENTIAL = issue(KEY, RUN_ID)
ENDED_CREDENTIAL = issue(KEY, RUN_ID + 1)  # well-formed, but no active run holds it
GRANT = Grant(run_id=RUN_ID, installation_id=7, repo_full_name=REPO)
ADVERTISEMENT = f"/git/{REPO}.git/info/refs?service=git-upload-pack"
PACK = f"/git/{REPO}.git/git-upload-pack"


def basic(secret: str, user: str = "x-access-token") -> str:
    """An Authorization value as git sends it from `http.extraHeader`."""
    return "Basic " + base64.b64encode(f"{user}:{secret}".encode()).decode()


SECRETS = (INSTALLATION_TOKEN, CREDENTIAL, basic(INSTALLATION_TOKEN).split()[1],
           basic(CREDENTIAL).split()[1])


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text


def assert_clean_logs(caplog: pytest.LogCaptureFixture) -> None:
    assert_no_secret(caplog.text)
    for record in caplog.records:
        assert_no_secret(record.getMessage())
        assert_no_secret(record.exc_text or "")


class Tokens:
    """The run's read-only token, as the bot's token cache would hand it out."""

    def __init__(self) -> None:
        self.asked: list[Grant] = []

    async def read_token(self, grant: Grant) -> str:
        self.asked.append(grant)
        return INSTALLATION_TOKEN


class RecordingGitServer(GitHttpServer):
    """The git server, also keeping each request's Authorization to show which one came."""

    def __init__(self, project_root: Path, token: str) -> None:
        super().__init__(project_root, token)
        self.authorizations: list[str | None] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.authorizations.append(request.headers.get("Authorization"))
        return await super().handle(request)


@dataclass
class FakeGitHub:
    """A scripted upstream: records what reached it and answers as the test says."""

    seen: list[dict[str, Any]] = field(default_factory=list)
    answer: Callable[[web.Request], Awaitable[web.StreamResponse]] | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self.handle)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.seen.append({"method": request.method, "raw_path": request.raw_path,
                          "headers": dict(request.headers)})
        if self.answer is not None:
            return await self.answer(request)
        self.seen[-1]["body"] = await request.read()
        return web.Response(body=b"0000", content_type="application/x-git-upload-pack-result")


@dataclass
class Gateway:
    """The gateway's git app in front of one upstream, with its run table and audit trail."""

    grants: StaticGrants
    audit: MemoryAudit
    tokens: Tokens
    server: TestServer
    client: TestClient

    def remote(self, repo: str = REPO) -> str:
        return str(self.server.make_url(f"/git/{repo}.git"))

    def raw(self, method: str, path: str, **kwargs: Any) -> Any:
        """A request sent with its path exactly as written (yarl would normalize `..` and
        decode `%2F` in the query)."""
        url = URL(str(self.server.make_url("")).rstrip("/") + path, encoded=True)
        return self.client.session.request(method, url, **kwargs)

    def events(self) -> list[dict[str, Any]]:
        assert all(run_id == RUN_ID and kind == "git" for run_id, kind, _ in self.audit.events)
        return [data for _, _, data in self.audit.events]


StartGateway = Callable[..., Awaitable[Gateway]]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def start_gateway(aiohttp_server: Any, aiohttp_client: Any,
                  session: aiohttp.ClientSession) -> StartGateway:
    async def start(upstream: str, *, server: dict[str, Any] | None = None,
                    **limits: Any) -> Gateway:
        grants, audit, tokens = StaticGrants({CREDENTIAL: GRANT}), MemoryAudit(), Tokens()
        app = web.Application()
        add_routes(app, GitProxy(grants, audit, tokens, session, upstream, **limits))
        test_server = await aiohttp_server(app, **(server or {}))
        return Gateway(grants, audit, tokens, test_server, await aiohttp_client(test_server))

    return start


@dataclass
class World:
    """A GitHub double serving octo/demo (three commits) and octo/other, behind the gateway."""

    github: RecordingGitServer
    gateway: Gateway
    commits: list[str]  # oldest first
    tmp: Path


@pytest.fixture
async def world(tmp_path: Path, aiohttp_server: Any, start_gateway: StartGateway) -> World:
    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    commits = []
    for number in range(1, 4):
        with (work / "notes.txt").open("a") as notes:
            notes.write(f"note {number}\n")
        git(work, "add", "-A")
        git(work, "commit", "-qm", f"commit {number}")
        commits.append(git(work, "rev-parse", "HEAD"))
    for name in ("demo", "other"):
        git(tmp_path, "clone", "-q", "--bare", str(work), f"github/octo/{name}.git")
    github = RecordingGitServer(tmp_path / "github", INSTALLATION_TOKEN)
    upstream = await aiohttp_server(github.app())
    gateway = await start_gateway(str(upstream.make_url("")).rstrip("/"))
    return World(github, gateway, commits, tmp_path)


async def run_git(cwd: Path, *args: str, credential: str | None = CREDENTIAL) -> tuple[int, str]:
    """Real git, as the sandbox runs it, without blocking the loop that serves it."""
    env = {"PATH": os.environ["PATH"], "HOME": str(cwd), "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "", "LC_ALL": "C",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    header = [] if credential is None else ["-c", f"http.extraHeader=Authorization: "
                                                  f"{basic(credential)}"]
    process = await asyncio.create_subprocess_exec(
        "git", *header, *args, cwd=cwd, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 30)
    return process.returncode or 0, out.decode() + err.decode()


def authorized(credential: str = CREDENTIAL) -> dict[str, str]:
    return {"Authorization": basic(credential)}


# --- real git through the gateway ---------------------------------------------------------


async def test_clone_goes_through_with_the_installation_token_only(
        world: World, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    code, output = await run_git(world.tmp, "clone", world.gateway.remote(), "clone")
    assert code == 0, output
    history = await run_git(world.tmp / "clone", "log", "--format=%H", credential=None)
    assert history == (0, "\n".join(reversed(world.commits)) + "\n")

    assert world.github.requests, "the clone never reached the upstream"
    assert all(ok for _method, _path, ok in world.github.requests)
    assert set(world.github.authorizations) == {basic(INSTALLATION_TOKEN)}
    assert {path for _m, path, _ok in world.github.requests} == {
        "/octo/demo.git/info/refs", "/octo/demo.git/git-upload-pack"}
    assert world.gateway.tokens.asked and all(g == GRANT for g in world.gateway.tokens.asked)

    events = world.gateway.events()
    assert len(events) == len(world.github.requests)
    assert all(event == {"service": "git-upload-pack", "repository": REPO, "status": 200,
                         "bytes_down": event["bytes_down"], "verdict": "allowed",
                         "reason": None} for event in events)
    assert sum(event["bytes_down"] for event in events) > 0
    assert_no_secret(output)
    assert_clean_logs(caplog)


async def test_shallow_fetch_of_one_commit(world: World) -> None:
    repo = world.tmp / "shallow"
    assert (await run_git(world.tmp, "init", "-q", "shallow", credential=None))[0] == 0
    assert (await run_git(repo, "remote", "add", "origin", world.gateway.remote(),
                          credential=None))[0] == 0
    middle = world.commits[1]  # not a branch tip: fetched by its SHA alone

    code, output = await run_git(repo, "fetch", "--quiet", "--no-tags", "--depth=1", "origin",
                                 middle)

    assert code == 0, output
    assert (await run_git(repo, "rev-parse", "FETCH_HEAD", credential=None))[1].strip() == middle
    assert (await run_git(repo, "rev-list", "--count", "FETCH_HEAD", credential=None))[1] == "1\n"
    assert (repo / ".git" / "shallow").exists()


async def test_the_sandbox_checkout_works_against_the_gateway(world: World) -> None:
    workspace, lines = world.tmp / "workspace", []
    env = {"PATH": os.environ["PATH"], "HOME": str(world.tmp)}
    await asyncio.to_thread(
        checkout, workspace=workspace, clone_url=world.gateway.remote(),
        base_sha=world.commits[-1], base_ref="main", branch=f"agentbot/run-{RUN_ID}",
        token=CREDENTIAL, env=env, deadline=time.monotonic() + 30,
        on_line=lambda _stream, line: lines.append(line))
    head = await run_git(workspace, "rev-parse", "HEAD", credential=None)
    assert head == (0, world.commits[-1] + "\n")
    assert set(world.github.authorizations) == {basic(INSTALLATION_TOKEN)}


# --- what the gateway refuses -------------------------------------------------------------


async def test_push_is_refused_and_never_reaches_github(world: World) -> None:
    code, output = await run_git(world.tmp, "clone", "-q", world.gateway.remote(), "clone")
    assert code == 0, output
    clone = world.tmp / "clone"
    (clone / "new.txt").write_text("pushed?\n")
    await run_git(clone, "add", "new.txt", credential=None)
    await run_git(clone, "commit", "-qm", "try to push", credential=None)

    code, output = await run_git(clone, "push", "origin", "HEAD:main")

    assert code != 0
    assert "403" in output
    client = world.gateway.client
    for method, path in [("GET", f"/git/{REPO}.git/info/refs?service=git-receive-pack"),
                         ("POST", f"/git/{REPO}.git/git-receive-pack"),
                         ("GET", f"{ADVERTISEMENT}&service=git-receive-pack")]:
        response = await client.request(method, path, headers=authorized())
        assert (response.status, await response.text()) == (403, FETCH_ONLY)
    assert not [path for _m, path, _ok in world.github.requests if "receive" in path]
    refused = [e for e in world.gateway.events() if e["verdict"] == "refused"]
    assert len(refused) >= 4
    assert all(e["service"] == "git-receive-pack" and e["status"] == 403 for e in refused)


async def test_another_repository_is_refused(world: World) -> None:
    response = await world.gateway.client.get(
        "/git/octo/other.git/info/refs?service=git-upload-pack", headers=authorized())
    assert (response.status, await response.text()) == (403, NOT_THIS_REPOSITORY)
    code, output = await run_git(world.tmp, "clone", world.gateway.remote("octo/other"), "o")
    assert code != 0 and "403" in output
    assert world.github.requests == []
    assert world.gateway.events()[0] == {
        "service": "git-upload-pack", "repository": "octo/other", "status": 403,
        "bytes_down": 0, "verdict": "refused", "reason": "other repository"}


async def test_the_repository_name_compares_case_insensitively(world: World) -> None:
    response = await world.gateway.client.get(
        "/git/OCTO/Demo.git/info/refs?service=git-upload-pack", headers=authorized())
    assert response.status == 200
    assert b"refs/heads/main" in await response.read()
    # Forwarded under the run's own spelling of the name.
    assert world.github.requests == [("GET", "/octo/demo.git/info/refs", True)]


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": basic("agw_31_wrongwrongwrongwrongwrongwrongwrongwrongwro")},
    {"Authorization": basic(ENDED_CREDENTIAL)},
    {"Authorization": basic(CREDENTIAL, user="someone")},
    {"Authorization": "Basic not*base64"},
    {"Authorization": f"token {CREDENTIAL}"},
], ids=["none", "forged", "no-run", "other-user", "garbled", "other-scheme"])
async def test_without_a_valid_credential_401(world: World, headers: dict[str, str]) -> None:
    response = await world.gateway.client.get(ADVERTISEMENT, headers=headers)
    assert response.status == 401
    assert response.headers["WWW-Authenticate"] == REALM
    assert world.github.requests == [] and world.gateway.audit.events == []


async def test_bearer_credential_accepted_and_git_without_one_fails(world: World) -> None:
    response = await world.gateway.client.get(
        ADVERTISEMENT, headers={"Authorization": f"Bearer {CREDENTIAL}"})
    assert response.status == 200
    code, output = await run_git(world.tmp, "clone", world.gateway.remote(), "c", credential=None)
    assert code != 0, output  # git met a 401 and, with prompts off, had nothing to offer
    assert len(world.github.requests) == 1


async def test_a_run_that_ended_is_refused(world: World) -> None:
    client = world.gateway.client
    assert (await client.get(ADVERTISEMENT, headers=authorized())).status == 200
    del world.gateway.grants.table[CREDENTIAL]  # the run ended between two requests
    response = await client.get(ADVERTISEMENT, headers=authorized())
    assert response.status == 401
    assert len(world.github.requests) == 1 and len(world.gateway.audit.events) == 1


@pytest.mark.parametrize("path", [
    "/git/oc..to/demo.git/info/refs?service=git-upload-pack",
    "/git/octo/de..mo.git/git-upload-pack",
    "/git/octo/..git/info/refs?service=git-upload-pack",
    "/git/octo/%2E%2E.git/info/refs?service=git-upload-pack",
    "/git/octo%2Fdemo/demo.git/info/refs?service=git-upload-pack",
    "/git/octo/de%2Fmo.git/info/refs?service=git-upload-pack",
    "/git/oc$to/demo.git/info/refs?service=git-upload-pack",
    "/git/octo/de%20mo.git/info/refs?service=git-upload-pack",
    f"/git/{'a' * 101}/demo.git/info/refs?service=git-upload-pack",
])
async def test_bad_names_400(world: World, path: str) -> None:
    method = "POST" if path.endswith("upload-pack") else "GET"
    response = await world.gateway.raw(method, path, headers=authorized())
    assert (response.status, await response.text()) == (400, BAD_NAME)
    assert world.github.requests == []
    assert world.gateway.events()[0]["reason"] == "bad name"


@pytest.mark.parametrize("method,path", [
    ("GET", f"/git/{REPO}.git/info/refs"),
    ("GET", f"/git/{REPO}.git/info/refs?service=git-upload-archive"),
    ("GET", f"/git/{REPO}.git/HEAD"),
    ("GET", f"/git/{REPO}.git/objects/info/packs"),
    ("POST", f"/git/{REPO}.git/info/refs?service=git-upload-pack"),
    ("GET", PACK),
    ("POST", f"/git/{REPO}.git/git-upload-archive"),
    ("POST", f"/git/{REPO}/git-upload-pack"),
    ("GET", "/git/octo"),
    ("GET", f"/git/{REPO}.git/info/refs/../refs?service=git-upload-pack"),
])
async def test_other_endpoints_404(world: World, method: str, path: str) -> None:
    response = await world.gateway.raw(method, path, headers=authorized())
    assert (response.status, await response.text()) == (404, NOT_FOUND)
    assert world.github.requests == []
    assert world.gateway.events()[0]["verdict"] == "refused"


# --- how it talks to the upstream --------------------------------------------------------


async def test_upstream_failure_passes_through_without_the_token(
        tmp_path: Path, aiohttp_server: Any, start_gateway: StartGateway,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    fake = FakeGitHub()

    async def echo_and_fail(request: web.Request) -> web.Response:
        # A misbehaving upstream that reflects what it was sent.
        return web.Response(status=500, text=f"boom {request.headers.get('Authorization')}",
                            headers={"X-Echo": request.headers.get("Authorization", "")})

    fake.answer = echo_and_fail
    gateway = await start_gateway(str((await aiohttp_server(fake.app())).make_url("")))

    response = await gateway.client.get(ADVERTISEMENT, headers=authorized())
    body = await response.text()
    assert response.status == 500
    assert_no_secret(body + repr(dict(response.headers)))
    code, output = await run_git(tmp_path, "clone", gateway.remote(), "clone")
    assert code != 0 and "500" in output
    assert_no_secret(output)
    assert gateway.events()[0] == {"service": "git-upload-pack", "repository": REPO,
                                   "status": 500, "bytes_down": 0, "verdict": "allowed",
                                   "reason": "upstream error"}
    assert_clean_logs(caplog)


async def test_unreachable_upstream_is_502(
        start_gateway: StartGateway, unused_tcp_port: int,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    gateway = await start_gateway(f"http://127.0.0.1:{unused_tcp_port}")
    response = await gateway.client.get(ADVERTISEMENT, headers=authorized())
    assert (response.status, await response.text()) == (502, UNREACHABLE)
    assert gateway.events()[0]["reason"] == "upstream unreachable"
    assert_clean_logs(caplog)


async def test_redirects_are_passed_back_not_followed(
        aiohttp_server: Any, start_gateway: StartGateway) -> None:
    fake = FakeGitHub()

    async def redirect(request: web.Request) -> web.Response:
        return web.Response(status=301, headers={"Location": "/elsewhere/demo.git/info/refs"})

    fake.answer = redirect
    gateway = await start_gateway(str((await aiohttp_server(fake.app())).make_url("")))
    response = await gateway.client.get(ADVERTISEMENT, headers=authorized(),
                                        allow_redirects=False)
    assert response.status == 301
    assert "Location" not in response.headers
    assert len(fake.seen) == 1


async def test_only_what_git_needs_goes_up(
        aiohttp_server: Any, start_gateway: StartGateway) -> None:
    fake = FakeGitHub()
    gateway = await start_gateway(str((await aiohttp_server(fake.app())).make_url("")))
    sent = {**authorized(), "Git-Protocol": "version=2", "User-Agent": "git/2.39",
            "Content-Type": "application/x-git-upload-pack-request",
            "Accept": "application/x-git-upload-pack-result",
            "Cookie": "session=abc", "X-Forwarded-For": "10.0.0.1",
            "Proxy-Authorization": basic(CREDENTIAL), "X-GitHub-Api-Version": "2022-11-28"}

    response = await gateway.raw("POST", f"{PACK}?x=%2F1", headers=sent, data=b"0000")

    assert response.status == 200
    seen = fake.seen[0]
    assert seen["raw_path"] == "/octo/demo.git/git-upload-pack?x=%2F1"
    assert seen["body"] == b"0000"
    headers = seen["headers"]
    assert headers["Authorization"] == basic(INSTALLATION_TOKEN)
    for name in ("Git-Protocol", "User-Agent", "Content-Type", "Accept"):
        assert headers[name] == sent[name]
    assert set(headers) <= {"Host", "Authorization", "Git-Protocol", "User-Agent",
                            "Content-Type", "Accept", "Accept-Encoding", "Content-Length",
                            "Transfer-Encoding"}
    assert_no_secret(repr(headers).replace(basic(INSTALLATION_TOKEN), ""))


@pytest.mark.parametrize("decoding_server", [False, True])
async def test_gzip_bodies_pass_unchanged(
        aiohttp_server: Any, start_gateway: StartGateway, decoding_server: bool) -> None:
    fake = FakeGitHub()
    answer = gzip.compress(b"0008NAK\n0000")

    async def gzipped(request: web.Request) -> web.Response:
        fake.seen[-1]["body"] = await request.read()
        return web.Response(body=answer, headers={
            "Content-Type": "application/x-git-upload-pack-result", "Content-Encoding": "gzip",
            "Cache-Control": "no-cache"})

    fake.answer = gzipped
    # Without decoding, this upstream records the bytes as they came over the wire.
    upstream = await aiohttp_server(fake.app(), auto_decompress=False)
    gateway = await start_gateway(str(upstream.make_url("")),
                                  server={"auto_decompress": decoding_server})
    request_body = b"0032want " + b"a" * 40 + b"\n00000009done\n"

    response = await gateway.client.post(
        PACK, data=gzip.compress(request_body), auto_decompress=False,
        headers={**authorized(), "Content-Encoding": "gzip", "Accept-Encoding": "gzip",
                 "Content-Type": "application/x-git-upload-pack-request"})

    assert response.status == 200
    assert await response.read() == answer
    assert response.headers["Content-Encoding"] == "gzip"
    assert response.headers["Cache-Control"] == "no-cache"
    seen = fake.seen[0]
    if decoding_server:  # the gateway's server undid the encoding; what goes up says so
        assert seen["body"] == request_body and "Content-Encoding" not in seen["headers"]
    else:
        assert gzip.decompress(seen["body"]) == request_body
        assert seen["headers"]["Content-Encoding"] == "gzip"
    assert gateway.events()[0]["bytes_down"] == len(answer)


async def test_bodies_stream_both_ways(aiohttp_server: Any, start_gateway: StartGateway) -> None:
    fake = FakeGitHub()
    first_up, release_up, release_down = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def streaming(request: web.Request) -> web.StreamResponse:
        # The first chunk arrives while the client still holds back the rest.
        await request.content.readexactly(5)
        first_up.set()
        rest = await request.read()
        fake.seen[-1]["body"] = rest
        response = web.StreamResponse()
        await response.prepare(request)
        await response.write(b"first")
        await release_down.wait()
        await response.write(b"-last")
        return response

    fake.answer = streaming
    gateway = await start_gateway(str((await aiohttp_server(fake.app())).make_url("")))

    async def body() -> AsyncIterator[bytes]:
        yield b"start"
        await release_up.wait()
        yield b"-rest"

    async def send() -> aiohttp.ClientResponse:
        return await gateway.client.post(PACK, data=body(), headers=authorized())

    sending = asyncio.create_task(send())
    await asyncio.wait_for(first_up.wait(), 5)
    release_up.set()
    response = await asyncio.wait_for(sending, 5)
    assert await asyncio.wait_for(response.content.readexactly(5), 5) == b"first"
    release_down.set()
    assert await response.content.read() == b"-last"
    assert fake.seen[0]["body"] == b"-rest"


async def test_request_body_cap(aiohttp_server: Any, start_gateway: StartGateway) -> None:
    fake = FakeGitHub()
    gateway = await start_gateway(str((await aiohttp_server(fake.app())).make_url("")),
                                  max_request_bytes=1024)

    response = await gateway.client.post(PACK, data=b"0" * 4096, headers=authorized())
    assert (response.status, await response.text()) == (413, TOO_LARGE)
    assert fake.seen == []

    async def unsized() -> AsyncIterator[bytes]:
        for _ in range(8):
            yield b"0" * 512

    response = await gateway.client.post(PACK, data=unsized(), headers=authorized())
    assert (response.status, await response.text()) == (413, TOO_LARGE)
    assert [e["status"] for e in gateway.events()] == [413, 413]
    assert {e["verdict"] for e in gateway.events()} == {"refused"}

    response = await gateway.client.post(PACK, data=b"0" * 1024, headers=authorized())
    assert response.status == 200


async def test_time_limit(aiohttp_server: Any, start_gateway: StartGateway) -> None:
    fake, release = FakeGitHub(), asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await asyncio.wait_for(release.wait(), 5)
        return web.Response(text="late")

    fake.answer = slow
    gateway = await start_gateway(str((await aiohttp_server(fake.app())).make_url("")),
                                  timeout=0.3)
    started = time.monotonic()
    response = await gateway.client.get(ADVERTISEMENT, headers=authorized())
    assert (response.status, await response.text()) == (504, TIMED_OUT)
    assert time.monotonic() - started < 3
    assert gateway.events()[0]["reason"] == "timed out"
    release.set()


async def test_time_limit_mid_stream_cuts_the_response_short(
        aiohttp_server: Any, start_gateway: StartGateway) -> None:
    fake, release = FakeGitHub(), asyncio.Event()

    async def stalls(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/x-git-result"})
        await response.prepare(request)
        await response.write(b"0008NAK\n")
        await asyncio.wait_for(release.wait(), 5)
        return response

    fake.answer = stalls
    gateway = await start_gateway(str((await aiohttp_server(fake.app())).make_url("")),
                                  timeout=0.3)
    response = await gateway.client.get(ADVERTISEMENT, headers=authorized())
    assert response.status == 200  # already sent when the limit struck
    with pytest.raises(aiohttp.ClientPayloadError):
        await asyncio.wait_for(response.read(), 3)
    assert gateway.events()[0] == {"service": "git-upload-pack", "repository": REPO,
                                   "status": 200, "bytes_down": 8, "verdict": "allowed",
                                   "reason": "timed out"}
    release.set()
