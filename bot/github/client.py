"""The GitHub API client: one shared session, App and installation auth, GitHub's rate limits."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import aiohttp
import gidgethub
import gidgethub.aiohttp

from bot import __version__
from bot.github.auth import AppAuth, Clock, InstallationTokens, Token
from bot.github.pacing import WriteBudget, WriteWindow, creates_content

if TYPE_CHECKING:
    from bot.config.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_API_URL = "https://api.github.com"
USER_AGENT = f"agentbot/{__version__}"

ResponseHook = Callable[[str, str, int, int | None], None]
"""Called after every response: (method, path template, status, x-ratelimit-remaining)."""
Sleep = Callable[[float], Awaitable[None]]

# Whether the request being handled got its credential from the client (not from the caller's
# explicit jwt=/oauth_token=); only then does a 401 mean "refresh ours and try again".
_OWN_CREDENTIAL: ContextVar[bool] = ContextVar("agentbot_own_credential", default=False)

# POSTs that create something new each time: retrying one after a 5xx could duplicate it, so
# the caller (which records its side effects) decides instead.
_NOT_IDEMPOTENT = re.compile(r"/(comments|replies|check-runs|conversions)$")


class RateLimited(gidgethub.HTTPException):
    """GitHub asked us to wait until `reset_at` (UTC); defer the work instead of retrying now."""

    def __init__(self, reset_at: float, status_code: int, message: str,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(HTTPStatus(status_code), message, headers=headers)
        self.reset_at = datetime.fromtimestamp(reset_at, UTC)

    def delay(self, now: float | None = None) -> float:
        """Seconds from `now` (default: the wall clock) until GitHub lets us try again."""
        return max(self.reset_at.timestamp() - (time.time() if now is None else now), 0.0)


@dataclass(frozen=True)
class RetryPolicy:
    """How patient the client is; waits go through the client's injectable `sleep`."""

    max_wait: float = 60.0  # longest `retry-after` slept through; longer raises RateLimited
    rate_limit_retries: int = 2  # secondary-limit waits per request
    server_error_retries: int = 3  # 5xx retries per request
    backoff: float = 0.5  # first 5xx pause, doubled after each failure


def create_session(*, timeout: float = 30.0, connections: int = 50) -> aiohttp.ClientSession:
    """The process's one ClientSession for GitHub (close it on shutdown)."""
    # GitHub's secondary limits allow 100 concurrent requests; stay well below.
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=timeout, connect=10),
        connector=aiohttp.TCPConnector(limit=connections),
    )


def path_template(url: str, base_url: str = DEFAULT_API_URL) -> str:
    """A low-cardinality name for a request path (`/repos/{owner}/{repo}/issues/{n}`)."""
    path = url.removeprefix(base_url.rstrip("/")).split("?", 1)[0]
    path = re.sub(r"^/repos/[^/]+/[^/]+", "/repos/{owner}/{repo}", path)
    path = re.sub(r"/(contents)/.*$", r"/\1/{path}", path)
    path = re.sub(r"/(git/refs?|git/matching-refs|branches)/.*$", r"/\1/{ref}", path)
    path = re.sub(r"/commits/[^/]+/", "/commits/{ref}/", path)
    path = re.sub(r"/(collaborators|app-manifests|users)/[^/]+", r"/\1/{name}", path)
    path = re.sub(r"/[0-9a-f]{40}(?=/|$)", "/{sha}", path)
    return re.sub(r"/\d+(?=/|$)", "/{n}", path)


class GitHubClient(gidgethub.aiohttp.GitHubAPI):
    """gidgethub's aiohttp client that brings its own credential and honours GitHub's limits.

    Handlers use gidgethub's `getitem`, `getiter`, `post`, `patch`, `put` and `delete`.
    A 401 refreshes the credential once; 403/429 with `retry-after` waits (up to
    `policy.max_wait`) or raises RateLimited; an exhausted primary limit raises RateLimited
    with `x-ratelimit-reset`; a 5xx is retried with backoff, except on creating POSTs.
    """

    def __init__(self, session: aiohttp.ClientSession, *, base_url: str,
                 authorization: Callable[[], Awaitable[str]],
                 on_unauthorized: Callable[[], None], policy: RetryPolicy, sleep: Sleep,
                 clock: Clock, on_response: ResponseHook | None = None,
                 requester: str = USER_AGENT, cache: Any = None,
                 writes: WriteWindow | None = None) -> None:
        super().__init__(session, requester, base_url=base_url, cache=cache)
        self.writes = writes  # the installation's content-creation budget (None: not paced)
        self._authorization = authorization
        self._on_unauthorized = on_unauthorized
        self._policy = policy
        self._sleep = sleep
        self._clock = clock
        self._on_response = on_response

    async def _request(self, method: str, url: str, headers: Mapping[str, str],
                       body: bytes = b"") -> tuple[int, Mapping[str, str], bytes]:
        headers = dict(headers)
        own = "authorization" not in headers
        if own:
            headers["authorization"] = await self._authorization()
        _OWN_CREDENTIAL.set(own)
        writes = self.writes if creates_content(method, self._path(url)) else None
        if writes is not None:
            await writes.before_write()
        try:
            status, response_headers, data = await super()._request(method, url, headers, body)
        finally:
            if writes is not None:
                writes.answered()  # counted from its answer: GitHub saw it by then, or never
        if self._on_response is not None:
            remaining = response_headers.get("x-ratelimit-remaining")
            try:
                self._on_response(method, path_template(url, self.base_url), status,
                                  int(remaining) if remaining is not None else None)
            except Exception:  # a metrics bug must not fail the API call
                log.exception("the GitHub response hook failed")
        return status, response_headers, data

    def _path(self, url: str) -> str:
        return url.removeprefix(self.base_url.rstrip("/"))

    async def sleep(self, seconds: float) -> None:
        """Wait through the injectable sleep (tests pass one that does not really wait)."""
        await self._sleep(seconds)

    async def handle_rate_limit_error(self, *, method: str, url: str,
                                      exception: gidgethub.HTTPException, attempt: int) -> bool:
        """gidgethub's hook: True to send the request again (after waiting here)."""
        status = int(exception.status_code)
        if status == 401 and attempt == 1 and _OWN_CREDENTIAL.get():
            log.info("GitHub refused our credential for %s %s; refreshing it once",
                     method, path_template(url, self.base_url))
            self._on_unauthorized()
            return True
        if status in (403, 429):
            paced = self.writes is not None and creates_content(method, self._path(url))
            return await self._rate_limited(exception, status, attempt, paced)
        if status >= 500 and attempt <= self._policy.server_error_retries \
                and (method != "POST" or not _NOT_IDEMPOTENT.search(url.split("?", 1)[0])):
            pause = self._policy.backoff * 2 ** (attempt - 1)
            log.warning("GitHub answered %s to %s %s; retry %s in %.1fs", status, method,
                        path_template(url, self.base_url), attempt, pause)
            await self.sleep(pause)
            return True
        return False

    async def _rate_limited(self, exception: gidgethub.HTTPException, status: int,
                            attempt: int, paced: bool) -> bool:
        headers = exception.headers
        now = self._clock()
        retry_after = _number(headers.get("retry-after"))
        if retry_after is not None and paced and self.writes is not None:
            # A content limit: this installation's writes all wait (the retry among them, in
            # its turn); its reads and other installations go on.
            self.writes.block(retry_after)
            if retry_after <= self._policy.max_wait and attempt <= self._policy.rate_limit_retries:
                log.warning("GitHub refused a write for its limits; this installation's "
                            "writes wait %.0fs", retry_after)
                return True
            raise RateLimited(now + retry_after, status, str(exception), headers) from exception
        if retry_after is not None:
            if retry_after <= self._policy.max_wait and attempt <= self._policy.rate_limit_retries:
                log.warning("GitHub asked us to slow down; waiting %.0fs", retry_after)
                await self.sleep(retry_after)
                return True
            raise RateLimited(now + retry_after, status, str(exception), headers) from exception
        reset = _number(headers.get("x-ratelimit-reset"))
        if headers.get("x-ratelimit-remaining") == "0" and reset is not None:
            raise RateLimited(reset, status, str(exception), headers) from exception
        if status == 429 or "rate limit" in str(exception).lower():
            # GitHub: without other guidance, wait at least a minute before trying again.
            raise RateLimited(now + 60, status, str(exception), headers) from exception
        return False  # an ordinary 403: a permission GitHub did not grant


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class GitHubApp:
    """The App's entry point: `app_client()` as the App, `installation(id)` as an installation."""

    def __init__(self, app_id: int | str, private_key: str, session: aiohttp.ClientSession, *,
                 base_url: str = DEFAULT_API_URL, clock: Clock = time.time,
                 sleep: Sleep = asyncio.sleep, policy: RetryPolicy | None = None,
                 on_response: ResponseHook | None = None,
                 writes: WriteBudget | None = None) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.auth = AppAuth(app_id, private_key, clock=clock)
        self._clock = clock
        self._sleep = sleep
        self._policy = policy or RetryPolicy()
        self.on_response = on_response
        self.writes = writes if writes is not None else WriteBudget(clock=clock, sleep=sleep)
        self._app_client = self._client(self._app_authorization, self.auth.forget)
        self.tokens = InstallationTokens(self._app_client, clock=clock)
        self.app_login: str | None = None  # "<slug>[bot]", known after identify()

    @classmethod
    def from_settings(cls, settings: Settings, session: aiohttp.ClientSession,
                      **options: Any) -> GitHubApp:
        """Build from Settings (GITHUB_APP_ID, the private key, GITHUB_API_URL)."""
        pem = settings.private_key_pem()
        if settings.github_app_id is None or pem is None:
            raise ValueError("GITHUB_APP_ID and a private key are needed to talk to GitHub")
        return cls(settings.github_app_id, pem, session, base_url=settings.github_api_url,
                   **options)

    def _client(self, authorization: Callable[[], Awaitable[str]],
                on_unauthorized: Callable[[], None], cache: Any = None,
                writes: WriteWindow | None = None) -> GitHubClient:
        return GitHubClient(self.session, base_url=self.base_url, authorization=authorization,
                            on_unauthorized=on_unauthorized, policy=self._policy,
                            sleep=self._sleep, clock=self._clock, on_response=self.on_response,
                            cache=cache, writes=writes)

    async def _app_authorization(self) -> str:
        return f"bearer {self.auth.jwt()}"

    def app_client(self) -> GitHubClient:
        """The client that acts as the App itself (JWT): installations, tokens, deliveries."""
        return self._app_client

    def installation(self, installation_id: int, cache: Any = None) -> GitHubClient:
        """A client acting as one installation, with its cached (auto-refreshed) token.

        `cache` is gidgethub's optional ETag cache (a MutableMapping, e.g. cachetools.LRUCache).
        """
        async def authorization() -> str:
            token = await self.tokens.get(installation_id)
            return f"token {token.value}"

        return self._client(authorization, lambda: self.tokens.invalidate(installation_id),
                            cache, self.writes.window(installation_id))

    async def identify(self) -> dict[str, Any]:
        """`GET /app`; also sets `app_login`, the login the App's own comments carry."""
        app = await self._app_client.getitem("/app")
        self.app_login = f"{app['slug']}[bot]"
        return app

    async def mint_scoped_token(self, installation_id: int, repositories: Iterable[str | int],
                                permissions: Mapping[str, str]) -> Token:
        """A fresh token for the sandbox, e.g. `(id, ["owner/repo"], {"contents": "read"})`."""
        return await self.tokens.mint_scoped_token(installation_id, repositories, permissions)

    async def revoke_token(self, token: Token) -> bool:
        """Revoke a token; False when it was already expired or revoked."""
        return await self.tokens.revoke_token(token)
