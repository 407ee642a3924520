"""Sign-in with the App's OAuth client, and who may read which repository (cached)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from urllib.parse import urlencode

import aiohttp
import gidgethub
import gidgethub.aiohttp
from cachetools import TTLCache

from bot.web.session import SESSION_SECONDS, Session

USER_AGENT = "agentbot-run-pages"
ACCESS_SECONDS = 300.0  # how long GitHub's answer to "may they read it?" is trusted
ACCESS_ENTRIES = 50_000
EXCHANGE_TIMEOUT = 15.0

# What a person reads when sign-in did not work; GitHub's own words are not shown (they may
# change), its error code is.
DENIED = "You did not authorize agentbot on GitHub, so you are not signed in."
EXPIRED = ("GitHub did not accept the sign-in code (it is used once and expires after ten "
           "minutes). Sign in again.")
REFUSED = "GitHub refused the sign-in ({error}). Ask the operator to check the App's OAuth client."
UNREACHABLE = "GitHub could not be reached to finish the sign-in. Try again in a moment."


class SignInError(Exception):
    """Sign-in failed; the message is safe to show the person."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class TokenRevoked(Exception):
    """GitHub no longer accepts the person's token: they must sign in again."""


class GitHubUnavailable(Exception):
    """GitHub did not answer whether the person may read a repository."""


class GitHubSignIn:
    """The OAuth web flow of the App's client, and the calls made with a person's token."""

    def __init__(self, session: aiohttp.ClientSession, api_url: str, web_url: str,
                 client_id: str, client_secret: str,
                 clock: Callable[[], float] = time.time) -> None:
        self._session = session
        self._api_url = api_url.rstrip("/")
        self._web_url = web_url.rstrip("/")
        self._client_id = client_id
        self._client_secret = client_secret
        self._clock = clock

    def authorize_url(self, redirect_uri: str, state: str) -> str:
        query = urlencode({"client_id": self._client_id, "redirect_uri": redirect_uri,
                           "state": state, "allow_signup": "false"})
        return f"{self._web_url}/login/oauth/authorize?{query}"

    async def sign_in(self, code: str, redirect_uri: str) -> Session:
        """Trade the code for the person's token and learn who they are."""
        token, expires_in = await self._exchange(code, redirect_uri)
        try:
            user = await self._api(token).getitem("/user")
        except (gidgethub.HTTPException, aiohttp.ClientError, TimeoutError) as exc:
            raise SignInError(UNREACHABLE, 502) from exc
        lifetime = min(expires_in or SESSION_SECONDS, SESSION_SECONDS)
        return Session(str(user["login"]), int(user["id"]), token, self._clock() + lifetime)

    async def _exchange(self, code: str, redirect_uri: str) -> tuple[str, int | None]:
        form = {"client_id": self._client_id, "client_secret": self._client_secret,
                "code": code, "redirect_uri": redirect_uri}
        try:
            async with asyncio.timeout(EXCHANGE_TIMEOUT):
                async with self._session.post(
                        f"{self._web_url}/login/oauth/access_token", data=form,
                        headers={"Accept": "application/json",
                                 "User-Agent": USER_AGENT}) as response:
                    if response.status != 200:
                        raise SignInError(UNREACHABLE, 502)
                    body = await response.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise SignInError(UNREACHABLE, 502) from exc
        if not isinstance(body, dict):
            raise SignInError(UNREACHABLE, 502)
        # GitHub answers a bad request 200 too, with an `error` field instead of a token.
        error = body.get("error")
        if error == "bad_verification_code":
            raise SignInError(EXPIRED)
        if error or not isinstance(body.get("access_token"), str):
            raise SignInError(REFUSED.format(error=str(error or "no token")[:60]), 502)
        expires_in = body.get("expires_in")
        return body["access_token"], int(expires_in) if isinstance(expires_in, int) else None

    async def can_read(self, token: str, repo_full_name: str) -> bool:
        """Whether GitHub shows the person this repository (a 404 says no)."""
        owner, _, name = repo_full_name.partition("/")
        try:
            repo = await self._api(token).getitem("/repos/{owner}/{repo}",
                                                  {"owner": owner, "repo": name})
        except gidgethub.BadRequest as exc:
            if exc.status_code == 401:
                raise TokenRevoked() from exc
            if exc.status_code in (403, 404):
                return False
            raise GitHubUnavailable(str(exc.status_code)) from exc
        except (gidgethub.HTTPException, aiohttp.ClientError, TimeoutError) as exc:
            raise GitHubUnavailable(type(exc).__name__) from exc
        permissions = repo.get("permissions") or {}
        return bool(permissions.get("pull", True))

    def _api(self, token: str) -> gidgethub.aiohttp.GitHubAPI:
        return gidgethub.aiohttp.GitHubAPI(self._session, USER_AGENT, oauth_token=token,
                                           base_url=self._api_url)


class Access:
    """Who may read which repository, as GitHub said within the last few minutes.

    One question per person and repository at a time: concurrent page loads wait for the
    same answer instead of each asking GitHub.
    """

    def __init__(self, check: Callable[[str, str], Awaitable[bool]],
                 ttl: float = ACCESS_SECONDS, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self._check = check
        self._cache: TTLCache[tuple[int, str], bool] = TTLCache(ACCESS_ENTRIES, ttl,
                                                                 timer=clock)
        self._asking: dict[tuple[int, str], asyncio.Future[bool]] = {}
        self.asked = 0  # questions that went to GitHub

    async def can_read(self, session: Session, repo_full_name: str) -> bool:
        key = (session.user_id, repo_full_name.lower())
        known = self._cache.get(key)
        if known is not None:
            return known
        pending = self._asking.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._asking[key] = future
        try:
            self.asked += 1
            answer = await self._check(session.token, repo_full_name)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: nobody else may be waiting
            raise
        else:
            self._cache[key] = answer
            future.set_result(answer)
            return answer
        finally:
            del self._asking[key]

    def forget(self, user_id: int) -> None:
        """Drop what is known of one person (they signed out, or their token was revoked)."""
        for key in [k for k in self._cache if k[0] == user_id]:
            self._cache.pop(key, None)
