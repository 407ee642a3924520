"""GitHub App auth: the App's JWT, cached installation tokens and scoped sandbox tokens."""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import jwt
from cachetools import TLRUCache
from gidgethub import HTTPException

if TYPE_CHECKING:
    from gidgethub.abc import GitHubAPI

log = logging.getLogger(__name__)

JWT_BACKDATE = 60  # seconds `iat` is set in the past, for clock drift (GitHub's advice)
JWT_LIFETIME = 9 * 60  # `exp` this far ahead of now; GitHub refuses more than 10 minutes
JWT_REUSE_MARGIN = 2 * 60  # sign a new JWT once the cached one has less than this left
TOKEN_REFRESH_MARGIN = 5 * 60  # stop using an installation token this long before it expires

Clock = Callable[[], float]
ScopeKey = tuple[int, tuple[str, ...] | None, tuple[tuple[str, str], ...] | None]


class Token:
    """An installation token; its `repr` and `str` never show the secret, only `.value` does."""

    __slots__ = ("_value", "expires_at", "installation_id", "permissions", "repositories")

    def __init__(self, value: str, expires_at: float, installation_id: int,
                 repositories: tuple[str, ...] | None = None,
                 permissions: Mapping[str, str] | None = None) -> None:
        self._value = value
        self.expires_at = expires_at
        self.installation_id = installation_id
        self.repositories = repositories
        self.permissions = dict(permissions or {})

    @property
    def value(self) -> str:
        """The secret itself, for an Authorization header or the sandbox's token file."""
        return self._value

    def expires_in(self, now: float) -> float:
        """Seconds left at `now`."""
        return self.expires_at - now

    def __repr__(self) -> str:
        expires = datetime.fromtimestamp(self.expires_at, UTC).isoformat(timespec="seconds")
        scope = f" repositories={list(self.repositories)}" if self.repositories is not None else ""
        scope += f" permissions={self.permissions}" if self.permissions else ""
        return f"<Token installation={self.installation_id} expires_at={expires}{scope}>"

    __str__ = __repr__


class AppAuth:
    """Signs the App's JWTs (RS256, `iat` 60 s back, `exp` 9 minutes ahead, `iss` = app id)."""

    def __init__(self, app_id: int | str, private_key: str, *, clock: Clock = time.time) -> None:
        self.app_id = str(app_id)
        self._private_key = private_key
        self._clock = clock
        self._jwt: str | None = None
        self._jwt_expires = 0.0

    def jwt(self) -> str:
        """A JWT valid for at least two more minutes (signed anew when needed)."""
        now = self._clock()
        if self._jwt is None or self._jwt_expires - now < JWT_REUSE_MARGIN:
            issued, expires = int(now) - JWT_BACKDATE, int(now) + JWT_LIFETIME
            self._jwt = jwt.encode({"iat": issued, "exp": expires, "iss": self.app_id},
                                   self._private_key, algorithm="RS256")
            self._jwt_expires = expires
        return self._jwt

    def forget(self) -> None:
        """Drop the cached JWT (GitHub refused it; sign a fresh one next time)."""
        self._jwt = None

    def __repr__(self) -> str:
        return f"<AppAuth app_id={self.app_id}>"


def _parse_expiry(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _scope_key(installation_id: int, repositories: Iterable[str | int] | None,
               permissions: Mapping[str, str] | None) -> ScopeKey:
    repos = None if repositories is None else tuple(sorted(str(r) for r in repositories))
    perms = None if permissions is None else tuple(sorted(permissions.items()))
    return installation_id, repos, perms


class InstallationTokens:
    """Installation tokens minted through the App client, cached per installation and scope.

    A cached token is used until 5 minutes before its `expires_at`; concurrent callers of
    one scope wait for a single mint (bedevere minted one per webhook; we do not).
    """

    def __init__(self, app_client: GitHubAPI, *, clock: Clock = time.time,
                 maxsize: int = 1024) -> None:
        self._app_client = app_client
        self._clock = clock
        self._cache: TLRUCache[ScopeKey, Token] = TLRUCache(
            maxsize, ttu=lambda _key, token, _now: token.expires_at - TOKEN_REFRESH_MARGIN,
            timer=clock)
        # Weak values: a lock lives exactly as long as someone waits on it.
        self._locks: weakref.WeakValueDictionary[ScopeKey, asyncio.Lock] = \
            weakref.WeakValueDictionary()
        self.minted = 0  # how many tokens this process asked GitHub for

    async def get(self, installation_id: int, repositories: Iterable[str | int] | None = None,
                  permissions: Mapping[str, str] | None = None) -> Token:
        """A usable token for the installation (and scope), from the cache when possible."""
        key = _scope_key(installation_id, repositories, permissions)
        token = self._cache.get(key)
        if token is not None:
            return token
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        async with lock:
            token = self._cache.get(key)  # another caller may have minted it meanwhile
            if token is None:
                token = await self._mint(installation_id, key[1], permissions)
                self._cache[key] = token
            return token

    def invalidate(self, installation_id: int, repositories: Iterable[str | int] | None = None,
                   permissions: Mapping[str, str] | None = None) -> None:
        """Forget the cached token of a scope (GitHub answered 401 with it)."""
        self._cache.pop(_scope_key(installation_id, repositories, permissions), None)

    async def mint_scoped_token(self, installation_id: int,
                                repositories: Iterable[str | int],
                                permissions: Mapping[str, str]) -> Token:
        """A new token limited to `repositories` (names or ids) and `permissions`; never cached.

        This is the sandbox's token (`{"contents": "read"}` on one repository): each run gets
        its own so that revoking it at the end of the run touches no other run.
        """
        repos = tuple(str(r) for r in repositories)
        if not repos:
            raise ValueError("a scoped token needs at least one repository")
        if not permissions:
            raise ValueError("a scoped token needs an explicit permission set")
        return await self._mint(installation_id, repos, permissions)

    async def revoke_token(self, token: Token, client: GitHubAPI | None = None) -> bool:
        """Revoke a token (`DELETE /installation/token`); False if GitHub no longer knew it."""
        for key, cached in list(self._cache.items()):
            if cached is token:
                self._cache.pop(key, None)
        try:
            await (client or self._app_client).delete("/installation/token",
                                                      oauth_token=token.value)
        except HTTPException as exc:
            if int(exc.status_code) == 401:  # expired or revoked already: nothing left to do
                return False
            raise
        log.info("revoked a token of installation %s", token.installation_id)
        return True

    async def _mint(self, installation_id: int, repositories: tuple[str, ...] | None,
                    permissions: Mapping[str, str] | None) -> Token:
        body: dict[str, Any] = {}
        if repositories is not None:
            ids = [int(r) for r in repositories if r.isdigit()]
            # GitHub takes bare names: the installation belongs to one account already.
            names = [r.rsplit("/", 1)[-1] for r in repositories if not r.isdigit()]
            if names:
                body["repositories"] = names
            if ids:
                body["repository_ids"] = ids
        if permissions is not None:
            body["permissions"] = dict(permissions)
        data = await self._app_client.post(
            "/app/installations/{installation_id}/access_tokens",
            {"installation_id": installation_id}, data=body or b"")
        self.minted += 1
        token = Token(data["token"], _parse_expiry(data["expires_at"]), installation_id,
                      repositories, data.get("permissions", permissions))
        log.info("minted %r", token)
        return token
