"""Git smart HTTP for the sandbox: fetches of the run's one repository, with its read token."""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import unquote

import aiohttp
from aiohttp import web
from yarl import URL

from bot.gateway.grants import Audit, Grant, Grants
from bot.logs import log_context

log = logging.getLogger(__name__)

PREFIX = "/git"
UPLOAD_PACK = "git-upload-pack"
RECEIVE_PACK = "git-receive-pack"
# A fetch request lists wants and haves; even a deep negotiation stays far below this.
MAX_REQUEST_BYTES = 64 * 1024 * 1024
# A whole clone of a big repository goes through one response, so this is generous.
REQUEST_TIMEOUT_SECONDS = 900.0
CONNECT_TIMEOUT_SECONDS = 30.0
CHUNK_BYTES = 64 * 1024
REALM = 'Basic realm="agentbot"'
# GitHub takes an installation token as the password of this user, and so do we ours.
TOKEN_USER = "x-access-token"  # noqa: S105 - a user name, not a token

FETCH_ONLY = "agentbot's gateway serves fetches only"
NOT_THIS_REPOSITORY = "not this run's repository"
NO_CREDENTIAL = "a gateway credential is required"
UNKNOWN_CREDENTIAL = "the gateway credential is unknown, or its run has ended"
BAD_NAME = "not a valid repository name"
NOT_FOUND = "not found"
TOO_LARGE = "the request body is too large"
TIMED_OUT = "the request ran past the gateway's time limit"
NO_TOKEN = "the gateway could not get a token for the repository"  # noqa: S105
UNREACHABLE = "the gateway could not reach GitHub"
GRANTS_FAILED = "the gateway could not check the credential"
UPSTREAM_ERROR = "GitHub answered {status}"
UPSTREAM_REDIRECT = "GitHub redirected this request; the gateway does not follow redirects"

_NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")
# What git's requests need upstream. Authorization is ours to set; cookies, proxy and
# forwarding headers of the sandbox have no business at GitHub.
_REQUEST_HEADERS = ("Content-Type", "Accept", "Git-Protocol", "Accept-Encoding", "User-Agent")
# Content-Encoding travels down too: bodies pass undecoded, so the client must know.
_RESPONSE_HEADERS = ("Content-Type", "Cache-Control", "Content-Encoding")


class TokenSource(Protocol):
    """Gives a run's read-only installation token."""

    async def read_token(self, grant: Grant) -> str:
        """The run's read-only installation token for its repository (minted and cached by
        the implementation; called once per git request)."""


class _TooLarge(Exception):
    """The request body ran past the cap while it streamed up."""


@dataclass
class _Outcome:
    """What one request of a run came to, for its audit event."""

    service: str | None = None
    repository: str | None = None
    status: int | None = None
    bytes_down: int = 0
    verdict: str = "refused"
    reason: str | None = None
    too_large: bool = False

    def audit_data(self) -> dict[str, Any]:
        return {"service": self.service, "repository": self.repository, "status": self.status,
                "bytes_down": self.bytes_down, "verdict": self.verdict, "reason": self.reason}


def valid_name(name: str) -> bool:
    """Whether `name` can be a GitHub owner or repository name (and so is safe in a path)."""
    return _NAME.fullmatch(name) is not None and ".." not in name and name != "."


def credential_of(authorization: str) -> str | None:
    """The gateway credential in an Authorization value (`Basic` with the user
    `x-access-token`, or `Bearer`); None when there is none of that shape."""
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    if not value:
        return None
    if scheme.lower() == "bearer":
        return value
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, colon, password = decoded.partition(":")
    if not colon or user != TOKEN_USER or not password:
        return None
    return password


def _basic(token: str) -> str:
    return "Basic " + base64.b64encode(f"{TOKEN_USER}:{token}".encode()).decode()


def _text(status: int, text: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=text, headers=headers)


class GitProxy:
    """Serves git fetches of a run's repository from GitHub, with the run's read-only token.

    The sandbox authenticates with its gateway credential; the installation token never
    reaches it, and pushes, other repositories and every other git endpoint are refused.
    """

    def __init__(self, grants: Grants, audit: Audit, tokens: TokenSource,
                 session: aiohttp.ClientSession, upstream: str = "https://github.com", *,
                 max_request_bytes: int = MAX_REQUEST_BYTES,
                 timeout: float = REQUEST_TIMEOUT_SECONDS) -> None:
        self.grants = grants
        self.audit = audit
        self.tokens = tokens
        self.session = session
        self.upstream = upstream.rstrip("/")
        self.max_request_bytes = max_request_bytes
        self.timeout = timeout

    def repository_url(self, grant: Grant) -> str:
        """Where the run's repository is fetched from: the clone URL GitHub gave for it (on
        GitHub Enterprise Server, its own host), else the grant's name under the upstream."""
        if grant.clone_url.startswith(("https://", "http://")):
            return grant.clone_url.rstrip("/")
        # The grant's spelling: the repository compared equal, and it is what GitHub knows.
        return f"{self.upstream}/{grant.repo_full_name}.git"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        """Any request under the prefix: authenticate, check, then forward or refuse."""
        authorizations = request.headers.getall("Authorization", [])
        if not authorizations:
            return _text(401, NO_CREDENTIAL, {"WWW-Authenticate": REALM})
        credential = credential_of(authorizations[0]) if len(authorizations) == 1 else None
        grant: Grant | None = None
        if credential is not None:
            try:
                grant = await self.grants.grant(credential)
            except Exception as exc:  # noqa: BLE001 - answered, never shown (may hold it)
                log.warning("git request: looking up the credential failed (%s)",
                            type(exc).__name__)
                return _text(503, GRANTS_FAILED)
        if grant is None:
            log.info("git request refused: unknown or ended credential")
            return _text(401, UNKNOWN_CREDENTIAL, {"WWW-Authenticate": REALM})
        with log_context(run_id=grant.run_id, installation_id=grant.installation_id):
            outcome = _Outcome()
            try:
                return await self._serve(request, grant, outcome)
            finally:
                await self._record(grant, outcome)

    async def _serve(self, request: web.Request, grant: Grant,
                     outcome: _Outcome) -> web.StreamResponse:
        # The raw path, split before unquoting: an encoded slash stays inside its segment,
        # where the name check refuses it.
        path = request.raw_path.partition("?")[0]
        tail = path[len(PREFIX) + 1:] if path.startswith(PREFIX + "/") else ""
        segments = [unquote(segment) for segment in tail.split("/")]
        services = request.query.getall("service", [])
        endpoint = segments[2:]
        if RECEIVE_PACK in services or (endpoint and RECEIVE_PACK in endpoint[-1]):
            outcome.service = RECEIVE_PACK
            return self._refuse(outcome, 403, FETCH_ONLY, "push")
        advertisement = (request.method == "GET" and endpoint == ["info", "refs"]
                         and services == [UPLOAD_PACK])
        pack = request.method == "POST" and endpoint == [UPLOAD_PACK]
        if len(segments) < 3 or not segments[1].endswith(".git"):
            return self._refuse(outcome, 404, NOT_FOUND, "not a git endpoint")
        outcome.service = UPLOAD_PACK if advertisement or pack else None
        owner, repo = segments[0], segments[1].removesuffix(".git")
        if not (valid_name(owner) and valid_name(repo)):
            return self._refuse(outcome, 400, BAD_NAME, "bad name")
        outcome.repository = f"{owner}/{repo}"
        if not (advertisement or pack):
            return self._refuse(outcome, 404, NOT_FOUND, "not a git endpoint")
        if outcome.repository.lower() != grant.repo_full_name.lower():
            return self._refuse(outcome, 403, NOT_THIS_REPOSITORY, "other repository")
        length = request.content_length
        if length is not None and length > self.max_request_bytes:
            return self._refuse(outcome, 413, TOO_LARGE, "too large")
        try:
            async with asyncio.timeout(self.timeout):
                return await self._forward(request, grant, outcome, "/".join(endpoint))
        except TimeoutError:
            outcome.verdict, outcome.reason = "allowed", "timed out"
            if outcome.status is not None:
                raise  # the status is out; cutting the connection short is all that is left
            log.warning("git request ran past %s s", self.timeout)
            outcome.status = 504
            return _text(504, TIMED_OUT)

    def _refuse(self, outcome: _Outcome, status: int, text: str, reason: str) -> web.Response:
        outcome.status, outcome.reason = status, reason
        log.info("git request refused: %s", reason)
        return _text(status, text)

    async def _forward(self, request: web.Request, grant: Grant, outcome: _Outcome,
                       endpoint: str) -> web.StreamResponse:
        outcome.verdict = "allowed"
        try:
            token = await self.tokens.read_token(grant)
        except Exception as exc:  # noqa: BLE001 - its text is not ours to show
            log.warning("git request: no installation token (%s)", type(exc).__name__)
            outcome.status, outcome.reason = 502, "no token"
            return _text(502, NO_TOKEN)
        query = request.raw_path.partition("?")[2]
        url = f"{self.repository_url(grant)}/{endpoint}" + (f"?{query}" if query else "")
        headers = {name: request.headers[name] for name in _REQUEST_HEADERS
                   if name in request.headers}
        # aiohttp would otherwise ask for gzip on its own; the client did not, and the body
        # comes down as GitHub sends it.
        headers.setdefault("Accept-Encoding", "identity")
        headers["Authorization"] = _basic(token)
        data: AsyncIterator[bytes] | None = None
        if request.method == "POST":
            data = self._body(request, outcome)
            # A server that decodes request bodies leaves total_compressed_bytes set; then
            # the bytes going up are no longer those that Content-Encoding and -Length name.
            if getattr(request.content, "total_compressed_bytes", None) is None:
                for name in ("Content-Encoding", "Content-Length"):
                    if name in request.headers:
                        headers[name] = request.headers[name]
        try:
            async with self.session.request(
                request.method, URL(url, encoded=True), headers=headers, data=data,
                allow_redirects=False, auto_decompress=False, raise_for_status=False,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT_SECONDS),
            ) as upstream:
                return await self._relay(request, upstream, outcome)
        # aiohttp reports a failing request body as a connection error; _TooLarge is here in
        # case a version lets it through as it is.
        except (aiohttp.ClientError, OSError, _TooLarge) as exc:
            if outcome.too_large:
                outcome.verdict = "refused"
                return self._refuse(outcome, 413, TOO_LARGE, "too large")
            if outcome.status is not None:
                outcome.reason = "cut short"
                raise  # mid-stream: the client sees a truncated response and fails
            # Only the type: aiohttp's errors carry the request, and with it our header.
            log.warning("git request: GitHub unreachable (%s)", type(exc).__name__)
            outcome.status, outcome.reason = 502, "upstream unreachable"
            return _text(502, UNREACHABLE)

    async def _body(self, request: web.Request, outcome: _Outcome) -> AsyncIterator[bytes]:
        # Chunk by chunk: the upstream's pace, not memory, limits how fast the sandbox sends.
        received = 0
        async for chunk in request.content.iter_chunked(CHUNK_BYTES):
            received += len(chunk)
            if received > self.max_request_bytes:
                outcome.too_large = True
                raise _TooLarge
            yield chunk

    async def _relay(self, request: web.Request, upstream: aiohttp.ClientResponse,
                     outcome: _Outcome) -> web.StreamResponse:
        outcome.status = upstream.status
        if upstream.status >= 300:
            # GitHub's error pages say nothing git shows; ours cannot echo what was sent up.
            outcome.reason = "upstream redirect" if upstream.status < 400 else "upstream error"
            log.info("git request: GitHub answered %s", upstream.status)
            text = (UPSTREAM_REDIRECT if upstream.status < 400
                    else UPSTREAM_ERROR.format(status=upstream.status))
            return _text(upstream.status, text)
        response = web.StreamResponse(status=upstream.status)
        for name in _RESPONSE_HEADERS:
            if name in upstream.headers:
                response.headers[name] = upstream.headers[name]
        await response.prepare(request)
        async for chunk in upstream.content.iter_chunked(CHUNK_BYTES):
            outcome.bytes_down += len(chunk)
            await response.write(chunk)
        await response.write_eof()
        return response

    async def _record(self, grant: Grant, outcome: _Outcome) -> None:
        try:
            await self.audit.record(grant.run_id, "git", outcome.audit_data())
        except Exception as exc:  # noqa: BLE001 - the response is out; say so and go on
            log.error("git request: the audit event was not recorded (%s)", type(exc).__name__)


def add_routes(app: web.Application, proxy: GitProxy) -> None:
    """Serve `proxy` under /git/: `/git/{owner}/{repo}.git/info/refs?service=git-upload-pack`
    and `/git/{owner}/{repo}.git/git-upload-pack`; everything else there is refused."""
    app.router.add_route("*", PREFIX + "/{tail:.*}", proxy.handle)
