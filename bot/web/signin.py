"""Sign-in and out through GitHub: `/login`, `/login/callback`, `/logout` (RunPages' part)."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from aiohttp import web

from bot.config.settings import Settings
from bot.web import pages
from bot.web.oauth import DENIED, REFUSED, Access, GitHubSignIn, SignInError
from bot.web.pages import respond, secure_headers
from bot.web.session import SESSION_COOKIE, STATE_COOKIE, Sealer, clear

log = logging.getLogger(__name__)

CALLBACK_PATH = "/login/callback"
BAD_STATE = "That sign-in link was not started here or has expired. Sign in again."
NO_CODE = "GitHub sent no code."


class SignInRoutes:
    """The sign-in handlers of RunPages, which sets these attributes."""

    settings: Settings
    sealer: Sealer
    secure: bool
    sign_in: GitHubSignIn | None
    access: Access | None

    def _redirect_uri(self, request: web.Request) -> str:
        base = self.settings.public_url or f"{request.scheme}://{request.host}"
        return base.rstrip("/") + CALLBACK_PATH

    async def login(self, request: web.Request) -> web.StreamResponse:
        """Off to GitHub, with a `state` bound to this browser."""
        assert self.sign_in is not None
        next_path = _local_path(request.query.get("next"))
        response = web.Response(status=302)
        state = self.sealer.new_state(response, next_path, self.secure)
        response.headers["Location"] = self.sign_in.authorize_url(self._redirect_uri(request),
                                                                  state.nonce)
        secure_headers(response)
        return response

    async def callback(self, request: web.Request) -> web.StreamResponse:
        """Back from GitHub: check the state, trade the code for a token, set the session."""
        assert self.sign_in is not None
        started = self.sealer.check_state(request, request.query.get("state"))
        if started is None:
            return respond(pages.sign_in_page("/runs", BAD_STATE), 400)
        if request.query.get("error"):
            error = request.query["error"]
            text = DENIED if error == "access_denied" else REFUSED.format(error=error[:60])
            response = respond(pages.sign_in_page(started.next_path, text), 400)
            clear(response, STATE_COOKIE, self.secure)
            return response
        code = request.query.get("code", "")
        if not code or len(code) > 100 or not code.isascii():
            return respond(pages.sign_in_page(started.next_path, NO_CODE), 400)
        try:
            session = await self.sign_in.sign_in(code, self._redirect_uri(request))
        except SignInError as exc:
            response = respond(pages.sign_in_page(started.next_path, str(exc)), exc.status)
            clear(response, STATE_COOKIE, self.secure)
            return response
        log.info("signed in", extra={"login": session.login})
        response = web.Response(status=303, headers={"Location": started.next_path})
        self.sealer.set_session(response, session, self.secure)
        clear(response, STATE_COOKIE, self.secure)
        secure_headers(response)
        return response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        """Drop the session (a POST from our own pages only)."""
        origin = request.headers.get("Origin")
        if origin is not None and origin != _origin(request, self.settings.public_url):
            return web.Response(status=403, text="sign-out from another site")
        session = self.sealer.session(request)
        if session is not None and self.access is not None:
            self.access.forget(session.user_id)
        response = web.Response(status=303, headers={"Location": "/runs"})
        clear(response, SESSION_COOKIE, self.secure)
        return response



def _local_path(value: str | None) -> str:
    """Where to go after sign-in: a path on this server only (no open redirect)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/runs"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or not value.isprintable():
        return "/runs"
    return value


def _origin(request: web.Request, public_url: str | None) -> str:
    if public_url:
        parts = urlsplit(public_url)
        return f"{parts.scheme}://{parts.netloc}"
    return f"{request.scheme}://{request.host}"
