"""Sealed cookies: the signed-in person (with their GitHub token) and the OAuth `state`."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson
from aiohttp import web
from cryptography.fernet import Fernet, InvalidToken

SESSION_COOKIE = "agentbot_session"
STATE_COOKIE = "agentbot_oauth"
# A session lasts at most as long as the App's user token (eight hours); signing in again
# after that takes one click while the person is still signed in to GitHub.
SESSION_SECONDS = 8 * 3600
STATE_SECONDS = 600  # the sign-in round trip through GitHub
MAX_COOKIE_BYTES = 4096


@dataclass(frozen=True)
class Session:
    """Who is signed in: their GitHub login and id, and the user token GitHub gave us."""

    login: str
    user_id: int
    token: str
    expires_at: float

    def __repr__(self) -> str:  # the token never reaches a log through a repr
        return f"Session(login={self.login!r}, user_id={self.user_id})"


@dataclass(frozen=True)
class SignInState:
    """The `state` of one sign-in round trip, and the page to go back to after it."""

    nonce: str
    next_path: str


class Sealer:
    """Encrypts and signs cookie values (Fernet: AES-CBC and HMAC-SHA256, with a timestamp).

    The key derives from the App's OAuth client secret, so every replica agrees and rotating
    the secret signs everybody out.
    """

    def __init__(self, client_secret: str, clock: Callable[[], float] = time.time) -> None:
        digest = hashlib.sha256(b"agentbot session key\0" + client_secret.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))
        self._clock = clock

    def seal(self, value: dict[str, object]) -> str:
        return self._fernet.encrypt_at_time(orjson.dumps(value), int(self._clock())).decode()

    def open(self, sealed: str | None, max_age: int) -> dict[str, object] | None:
        """The value, or None when it is missing, forged, altered or older than max_age."""
        if not sealed or len(sealed) > MAX_COOKIE_BYTES or not sealed.isascii():
            return None
        try:
            raw = self._fernet.decrypt_at_time(sealed.encode(), max_age, int(self._clock()))
            value = orjson.loads(raw)
        except (InvalidToken, orjson.JSONDecodeError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    # the session

    def session(self, request: web.Request) -> Session | None:
        value = self.open(request.cookies.get(SESSION_COOKIE), SESSION_SECONDS)
        if value is None:
            return None
        try:
            session = Session(str(value["login"]), int(value["id"]),  # type: ignore[call-overload]
                              str(value["token"]), float(value["exp"]))  # type: ignore[arg-type]
        except (KeyError, TypeError, ValueError):
            return None
        return session if session.expires_at > self._clock() else None

    def set_session(self, response: web.StreamResponse, session: Session, secure: bool) -> None:
        sealed = self.seal({"login": session.login, "id": session.user_id,
                            "token": session.token, "exp": session.expires_at})
        max_age = max(int(session.expires_at - self._clock()), 0)
        _set(response, SESSION_COOKIE, sealed, max_age, secure)

    # the OAuth state

    def new_state(self, response: web.StreamResponse, next_path: str,
                  secure: bool) -> SignInState:
        """A fresh `state` for GitHub's authorize URL, bound to this browser by a cookie."""
        state = SignInState(secrets.token_urlsafe(24), next_path)
        sealed = self.seal({"nonce": state.nonce, "next": next_path})
        _set(response, STATE_COOKIE, sealed, STATE_SECONDS, secure)
        return state

    def check_state(self, request: web.Request, returned: str | None) -> SignInState | None:
        """The sign-in this browser started, if `returned` is its state; else None (CSRF)."""
        value = self.open(request.cookies.get(STATE_COOKIE), STATE_SECONDS)
        if value is None or not returned or not returned.isascii():
            return None
        nonce, next_path = str(value.get("nonce", "")), str(value.get("next", "/runs"))
        if not nonce or not hmac.compare_digest(nonce.encode(), returned.encode()):
            return None
        return SignInState(nonce, next_path)


def clear(response: web.StreamResponse, name: str, secure: bool) -> None:
    _set(response, name, "", 0, secure)


def _set(response: web.StreamResponse, name: str, value: str, max_age: int,
         secure: bool) -> None:
    # Lax: the cookie comes along when GitHub sends the browser back (a top-level GET), and
    # never with another site's POST or its embedded requests.
    response.set_cookie(name, value, max_age=max_age, path="/", httponly=True, secure=secure,
                        samesite="Lax")
