"""The suite's one fake GitHub, strict per GitHub's REST description, and its pytest fixtures."""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import json
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from multidict import CIMultiDict

from bot.github.client import GitHubApp

# Imported for their side effect: each registers its handlers by operationId.
from tests.fakes import (  # noqa: F401
    github_routes_apps,
    github_routes_git,
    github_routes_issues,
    github_routes_pulls,
)
from tests.fakes.github_auth import (
    ANONYMOUS_OPERATIONS,
    APP_OPERATIONS,
    EITHER_OPERATIONS,
    check_jwt,
    check_scope,
    installation_token,
)
from tests.fakes.github_clock import FakeClock
from tests.fakes.github_hooks import FakeGitHubHooks
from tests.fakes.github_http import HANDLERS, ApiError, Call, Reply
from tests.fakes.github_oauth import FakeGitHubOAuth
from tests.fakes.github_setup import FakeGitHubSetup
from tests.fakes.github_state import DEFAULT_EVENTS, DEFAULT_PERMISSIONS, GitHubState, User
from tests.fakes.openapi_check import Match, RestDescription

RATE_LIMIT = 5000
_DEFAULT_FAULT_MESSAGES = {
    401: "Bad credentials",
    403: "You have exceeded a secondary rate limit. Please wait a few minutes before you try "
         "again.",
    429: "You have exceeded a secondary rate limit. Please wait a few minutes before you try "
         "again.",
}


@dataclass
class RecordedRequest:
    """One request as the fake received it (the Authorization header left out)."""

    method: str
    path: str
    query: dict[str, str]
    json: Any
    headers: CIMultiDict[str]  # case-insensitive, as HTTP headers are
    operation: str | None = None  # "METHOD /template" when documented
    status: int = 0


@dataclass
class Fault:
    method: str
    pattern: str
    status: int
    headers: dict[str, str]
    body: Any
    times: int

    def matches(self, method: str, path: str, template: str) -> bool:
        if self.method not in ("*", method):
            return False
        if "{" in self.pattern:
            return self.pattern == template
        return fnmatch.fnmatchcase(path, self.pattern)


class FakeGitHub(FakeGitHubSetup, FakeGitHubHooks, FakeGitHubOAuth):
    """GitHub's REST API as far as agentbot uses it, strict about what it accepts."""

    def __init__(self, private_key: rsa.RSAPrivateKey, *, app_id: int = 424242,
                 app_slug: str = "agentbot", git_root: Path | None = None,
                 clock: Callable[[], float] = time.time, strict: bool = True) -> None:
        FakeGitHubHooks.__init__(self)
        self.description = RestDescription.load()
        self.state = GitHubState(clock, git_root)
        self.git_root = git_root
        self.url = ""  # set once the server listens
        self.html_url = "https://github.com"
        self.app_id, self.app_slug, self.app_owner = app_id, app_slug, "agentbot-dev"
        self.app_permissions = dict(DEFAULT_PERMISSIONS)
        self.app_events = list(DEFAULT_EVENTS)
        self.manifest_webhook_secret = "fake-webhook-secret"
        self._key = private_key
        self.private_key_pem = private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption()).decode()
        self.strict = strict
        self.requests: list[RecordedRequest] = []
        self.violations: list[str] = []
        self._faults: list[Fault] = []
        self._hangs: list[Fault] = []
        self.hung = asyncio.Event()
        self._released = asyncio.Event()
        self._window = clock()
        self._used: dict[object, int] = {}
        # GitHub's secondary limit on content creation, emulated on request (see limit_content).
        self._content_limit: tuple[int, float] | None = None
        self._content_sent: dict[object, list[float]] = {}
        self.content_refusals = 0
        self.init_oauth()
        self.app = web.Application(client_max_size=110 * 1024 * 1024)
        self.add_oauth_routes(self.app)  # github.com's side, before the API's catch-all
        self.app.router.add_route("*", "/{tail:.*}", self._handle)

    # public helpers

    @property
    def clock(self) -> Callable[[], float]:
        return self.state.clock

    @clock.setter
    def clock(self, clock: Callable[[], float]) -> None:
        """Swap the clock JWTs and token expiry are judged by (align it with the bot's)."""
        self.state.clock = clock

    @property
    def bot_user(self) -> User:
        """The user GitHub shows for the App's own comments, commits and PRs."""
        return self.state.user(f"{self.app_slug}[bot]", "Bot")

    def allow_violations(self) -> None:
        """Keep `.violations` but do not fail the test for them (tests of the fake itself)."""
        self.strict = False

    def fail_next(self, method: str, path_pattern: str, status: int,
                  headers: Mapping[str, str] | None = None, body: Any = None,
                  times: int = 1) -> None:
        """Answer the next `times` matching requests with `status` instead of handling them.

        `path_pattern` is a documented template ("/repos/{owner}/{repo}/pulls") or a glob on
        the concrete path ("/repos/octo-org/*/pulls"); `method` may be "*".
        """
        self._faults.append(Fault(method.upper(), path_pattern, status, dict(headers or {}),
                                  body, times))

    def limit_content(self, per_window: int = 80, window: float = 60.0) -> None:
        """Refuse an installation's content-creating request past `per_window` of them in the
        last `window` seconds, as GitHub's secondary limit does: 403, `retry-after: 60`."""
        self._content_limit = (per_window, window)

    def content_writes(self, key: object, window: float = 60.0) -> int:
        """Content-creating requests of `key` (an installation id) in the last `window` s."""
        now = self.clock()
        return sum(1 for at in self._content_sent.get(key, []) if at > now - window)

    def calls(self, operation: str | None = None) -> list[RecordedRequest]:
        """Requests received, optionally only those of one "METHOD /template" operation."""
        return [r for r in self.requests if operation is None or r.operation == operation]

    def rate_limit(self, key: object) -> dict[str, int]:
        """The core rate limit of an installation id (or "app"), as `GET /rate_limit` shows."""
        used = self._used.get(key, 0)
        return {"limit": RATE_LIMIT, "used": used, "remaining": max(RATE_LIMIT - used, 0),
                "reset": int(self._window + 3600)}

    # the HTTP side

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        path = request.rel_url.raw_path
        headers = CIMultiDict((k, v) for k, v in request.headers.items()
                              if k.lower() != "authorization")
        record = RecordedRequest(request.method, path, dict(request.query), None, headers)
        self.requests.append(record)
        try:
            reply, key = self._dispatch(request, raw, record)
        except ApiError as error:
            if error.violation:
                self._violate(f"{request.method} {path}: {error.violation}")
            reply, key = Reply(error.status, error.body()), None
        except Exception:  # a bug in the fake must fail the test, not hide in a log
            self._violate(f"{request.method} {path}: the fake crashed\n{traceback.format_exc()}")
            reply, key = Reply(500, {"message": "Server Error"}), None
        hang = next((h for h in self._hangs if h.matches(request.method, path,
                                                          (record.operation or " ").split(" ")[1])
                     and 200 <= reply.status < 300), None)
        if hang is not None:
            # Done on "GitHub", but the answer never comes back: what a client sees when it
            # dies, or its connection does, right after sending a request.
            self._hangs.remove(hang)
            record.status = reply.status
            self.hung.set()
            await self._released.wait()  # until the test has stopped the client
        return self._respond(request, reply, record, key)

    def release(self) -> None:
        """Let hung requests answer (to nobody, once their client is gone)."""
        self._released.set()

    def hang_after(self, method: str, path_pattern: str) -> asyncio.Event:
        """Carry out the next matching request, then never answer it; `.hung` is set then.

        The pattern is a documented template or a glob, as for `fail_next`.
        """
        self._hangs.append(Fault(method.upper(), path_pattern, 0, {}, None, 1))
        self.hung = asyncio.Event()
        self._released = asyncio.Event()
        return self.hung

    def _dispatch(self, request: web.Request, raw: bytes,
                  record: RecordedRequest) -> tuple[Reply, object]:
        method = request.method
        match = self.description.match(method, record.path)
        if match is None:
            self._violate(f"{method} {record.path}: not an operation of GitHub's REST "
                          f"description ({self.description.source})")
            raise ApiError(404, "Not Found")
        operation = match.operation
        record.operation = operation.key
        problems, data = self.description.check_request(
            match, record.query, raw, request.headers.get("Content-Type", ""))
        record.json = data if data is not None else (raw.decode(errors="replace") or None)
        if problems:
            self._violate(f"{method} {record.path} ({operation.key}): " + "; ".join(problems))
            raise ApiError(422, "Invalid request.\n\n" + "\n".join(problems))
        call = Call(self, operation.key, match.params, record.query, data)
        key = self._authenticate(request, match, call)
        if method != "GET" and isinstance(key, int) and not record.path.startswith("/app/") \
                and record.path != "/installation/token":
            refusal = self._count_content(key)
            if refusal is not None:
                return refusal, key
        fault = next((f for f in self._faults
                      if f.matches(method, record.path, operation.template)), None)
        if fault is not None:
            fault.times -= 1
            if fault.times <= 0:
                self._faults.remove(fault)
            return self._fault_reply(fault, key), key
        handler = HANDLERS.get(operation.operation_id)
        if handler is None:
            self._violate(f"{operation.key}: documented, but the fake does not implement it")
            raise ApiError(501, "Not Implemented")
        reply = handler(call)
        if 200 <= reply.status < 300:
            for problem in self.description.check_response(match, reply.status, reply.body):
                self._violate(f"{operation.key}: the fake's own answer breaks the schema "
                              f"(a bug in the fake): {problem}")
        return reply, key

    def _authenticate(self, request: web.Request, match: Match, call: Call) -> object:
        """Check the credential the operation needs; returns the rate-limit bucket."""
        op_id = match.operation.operation_id
        if op_id in ANONYMOUS_OPERATIONS:
            return None
        scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
        if not credential:
            raise ApiError(401, "Requires authentication")
        is_jwt = scheme.lower() == "bearer" and credential.count(".") == 2
        if op_id in APP_OPERATIONS and not is_jwt:
            raise ApiError(401, "A JSON web token could not be decoded")
        if is_jwt:
            if op_id not in APP_OPERATIONS | EITHER_OPERATIONS:
                raise ApiError(403, "Resource not accessible by integration")
            check_jwt(credential, self._key.public_key(), self.app_id, self.state.now())
            key: object = "app"
        elif (user_token := self.user_token(credential)) is not None:
            return self.authenticate_user(match, call, user_token)
        else:
            call.token = installation_token(self.state, credential)
            key = call.token.installation_id
        if "owner" in match.params and "repo" in match.params:
            call.repo = self.state.repos.get(f"{match.params['owner']}/{match.params['repo']}")
            if call.repo is None:
                raise ApiError(404, "Not Found")
            if call.token is not None:
                check_scope(self.state, call.token, call.repo, op_id, request.method)
        return key

    def _count_content(self, key: int) -> Reply | None:
        now = self.clock()
        sent = self._content_sent.setdefault(key, [])
        if self._content_limit is not None:
            limit, window = self._content_limit
            if sum(1 for at in sent if at > now - window) >= limit:
                self.content_refusals += 1
                return Reply(403, {
                    "message": _DEFAULT_FAULT_MESSAGES[403],
                    "documentation_url": "https://docs.github.com/rest/using-the-rest-api/"
                                         "rate-limits-for-the-rest-api#about-secondary-rate-limits",
                    "status": "403"}, {"retry-after": "60"})
        sent.append(now)
        return None

    def _fault_reply(self, fault: Fault, key: object) -> Reply:
        body = fault.body
        if body is None:
            message = _DEFAULT_FAULT_MESSAGES.get(fault.status, "Server Error")
            if fault.status in (403, 429) and fault.headers.get("x-ratelimit-remaining") == "0":
                message = f"API rate limit exceeded for installation ID {key}."
            body = {"message": message, "documentation_url": "https://docs.github.com/rest",
                    "status": str(fault.status)}
        return Reply(fault.status, body, dict(fault.headers))

    def _respond(self, request: web.Request, reply: Reply, record: RecordedRequest,
                 key: object) -> web.StreamResponse:
        record.status = reply.status
        headers = CIMultiDict({"X-GitHub-Request-Id": uuid.uuid4().hex[:20].upper(),
                               "X-GitHub-Api-Version-Selected": "2022-11-28"})
        body = b""
        if reply.body is not None:
            if isinstance(reply.body, str | bytes):
                body = reply.body.encode() if isinstance(reply.body, str) else reply.body
                headers["Content-Type"] = "text/html; charset=utf-8"
            else:
                body = json.dumps(reply.body).encode()
                headers["Content-Type"] = "application/json; charset=utf-8"
        if request.method == "GET" and reply.status == 200:
            etag = f'W/"{hashlib.sha256(body).hexdigest()[:40]}"'
            headers["ETag"] = etag
            if request.headers.get("If-None-Match") == etag:
                # A conditional hit costs no rate limit on GitHub, and carries no body.
                headers.update(self._limits(key, 0))
                del headers["Content-Type"]
                record.status = 304
                return web.Response(status=304, headers=headers)
        headers.update(self._limits(key, 1))
        headers.update(reply.headers)  # case-insensitive: a fault's headers replace ours
        return web.Response(status=reply.status, body=body or None, headers=headers)

    def _limits(self, key: object, cost: int) -> dict[str, str]:
        self._used[key] = self._used.get(key, 0) + cost
        limit = self.rate_limit(key)
        return {"X-RateLimit-Limit": str(limit["limit"]),
                "X-RateLimit-Remaining": str(limit["remaining"]),
                "X-RateLimit-Reset": str(limit["reset"]),
                "X-RateLimit-Used": str(limit["used"]), "X-RateLimit-Resource": "core"}

    def _violate(self, message: str) -> None:
        self.violations.append(message)


@pytest.fixture(scope="session")
def fake_github_key() -> rsa.RSAPrivateKey:
    """The App's RSA key for the whole session (generating one per test would be slow)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def fake_clock() -> FakeClock:
    """A hand-moved clock; `github_app` and the fake GitHub both read it."""
    return FakeClock()


@pytest.fixture
async def fake_github(aiohttp_server: Any, fake_github_key: rsa.RSAPrivateKey,
                      tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[FakeGitHub]:
    """A started FakeGitHub; the test fails if the bot sent anything GitHub would not accept.

    Options go through indirect parametrization, e.g. `{"strict": False}` for tests that
    provoke violations on purpose (or call `fake_github.allow_violations()`).
    """
    options = dict(getattr(request, "param", None) or {})
    fake = FakeGitHub(fake_github_key, git_root=tmp_path / "fake-github", **options)
    server = await aiohttp_server(fake.app)
    fake.url = str(server.make_url("")).rstrip("/")
    yield fake
    await fake.close_webhooks()
    if fake.strict and fake.violations:
        pytest.fail("the fake GitHub refused requests GitHub would refuse:\n- "
                    + "\n- ".join(fake.violations), pytrace=False)


@pytest.fixture
async def github_app(fake_github: FakeGitHub, fake_clock: FakeClock) -> AsyncIterator[GitHubApp]:
    """The bot's real GitHubApp talking to `fake_github`, both on `fake_clock`.

    Its waits (retry-after, backoff) go to `fake_clock.sleep`: recorded, never slept.
    """
    fake_github.clock = fake_clock
    async with aiohttp.ClientSession() as session:
        yield GitHubApp(fake_github.app_id, fake_github.private_key_pem, session,
                        base_url=fake_github.url, clock=fake_clock, sleep=fake_clock.sleep)
