"""The fake GitHub's web flow for a GitHub App's user tokens, as GitHub documents it.

`GET /login/oauth/authorize` sends the browser back to the App's callback with a `code` (or
an `error`, when the person denies), `POST /login/oauth/access_token` trades the code for a
`ghu_` token (answering 200 with an `error` field when the code or the client is wrong), and
the REST side accepts the token for `GET /user` and `GET /repos/{owner}/{repo}`, showing a
repository only to someone who can read it.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from aiohttp import web

from tests.fakes import github_shapes as shapes
from tests.fakes.github_http import ApiError, Call, Reply, route
from tests.fakes.github_state import GitHubState, Repo, User, iso

if TYPE_CHECKING:
    from tests.fakes.openapi_check import Match

CODE_SECONDS = 600  # GitHub: "codes expire after 10 minutes"
TOKEN_SECONDS = 8 * 3600  # user access tokens of an App expire after eight hours
REFRESH_SECONDS = 184 * 86400
ERROR_URI = ("https://docs.github.com/apps/managing-oauth-apps/"
             "troubleshooting-oauth-app-access-token-request-errors")
AUTHORIZE_ERROR_URI = ("https://docs.github.com/apps/managing-oauth-apps/"
                       "troubleshooting-authorization-request-errors")
DENIED = "The user has denied your application access."
MISMATCH = "The redirect_uri MUST match the registered callback URL for this application."
BAD_CODE = "The code passed is incorrect or expired."
BAD_CLIENT = "The client_id and/or client_secret passed are incorrect."
# Operations a user token may call here (GitHub allows more; the bot needs these two).
USER_OPERATIONS = {"users/get-authenticated", "repos/get"}


@dataclass
class OAuthCode:
    login: str
    redirect_uri: str
    expires_at: float


@dataclass
class UserToken:
    login: str
    expires_at: float
    revoked: bool = False


class FakeGitHubOAuth:
    """The OAuth side of FakeGitHub: its web endpoints and the user tokens they issue."""

    state: GitHubState
    app_id: int
    url: str

    def init_oauth(self) -> None:
        self.oauth_client_id = f"Iv1.{self.app_id:016x}"  # as `GET /app` shows it
        self.oauth_client_secret = secrets.token_hex(20)
        # The App's registered callback URLs; empty means "any" until a test registers one.
        self.oauth_callback_urls: list[str] = []
        # Who is signed in to GitHub in the browser, and whether they approve the App.
        self.oauth_login: str | None = "octocat"
        self.oauth_denies = False
        self.oauth_codes: dict[str, OAuthCode] = {}
        self.user_tokens: dict[str, UserToken] = {}
        self.oauth_exchanges: list[dict[str, str]] = []  # the token requests' fields, no secret

    def add_oauth_routes(self, app: web.Application) -> None:
        app.router.add_get("/login/oauth/authorize", self._authorize)
        app.router.add_post("/login/oauth/access_token", self._access_token)

    # helpers for tests

    def issue_user_token(self, login: str) -> str:
        """A user token for `login`, as if they had signed in through the flow."""
        token = "ghu_" + secrets.token_urlsafe(27).replace("-", "a").replace("_", "b")[:36]
        self.user_tokens[token] = UserToken(login, self.state.now() + TOKEN_SECONDS)
        self.state.user(login)
        return token

    def expire_oauth_codes(self) -> None:
        for code in self.oauth_codes.values():
            code.expires_at = self.state.now() - 1

    def can_read(self, login: str, repo: Repo) -> bool:
        """Whether `login` may see `repo` with a token of this App: any public repository;
        a private one only where the App is installed and they own or collaborate on it."""
        if not repo.private:
            return True
        if self.state.installation_for(repo) is None:
            return False
        return login == repo.owner.login or login in repo.collaborators

    def role(self, login: str, repo: Repo) -> str:
        if login == repo.owner.login:
            return "admin"
        return repo.collaborators.get(login, "read")

    # the web endpoints

    def _callback_ok(self, redirect_uri: str) -> bool:
        if not self.oauth_callback_urls:
            return True
        target = urlsplit(redirect_uri)
        for registered in self.oauth_callback_urls:
            known = urlsplit(registered)
            # GitHub: same host and port, and a path inside the registered one.
            if (target.scheme, target.netloc) == (known.scheme, known.netloc) and (
                    target.path.rstrip("/") + "/").startswith(known.path.rstrip("/") + "/"):
                return True
        return False

    async def _authorize(self, request: web.Request) -> web.StreamResponse:
        query = request.query
        if query.get("client_id") != self.oauth_client_id:
            return web.Response(status=404, text="<h1>404</h1>", content_type="text/html")
        state = query.get("state")
        redirect_uri = query.get("redirect_uri") or (self.oauth_callback_urls or [""])[0]
        if not redirect_uri:
            return web.Response(status=400, text="no callback URL", content_type="text/html")
        if not self._callback_ok(redirect_uri):
            fallback = self.oauth_callback_urls[0]
            return _back(fallback, {"error": "redirect_uri_mismatch",
                                    "error_description": MISMATCH.replace("MUST", "must"),
                                    "error_uri": AUTHORIZE_ERROR_URI, "state": state})
        if self.oauth_login is None:
            return web.Response(text="<h1>Sign in to GitHub</h1>", content_type="text/html")
        if self.oauth_denies:
            return _back(redirect_uri, {"error": "access_denied", "error_description": DENIED,
                                        "error_uri": AUTHORIZE_ERROR_URI, "state": state})
        code = secrets.token_hex(10)
        self.oauth_codes[code] = OAuthCode(self.oauth_login, redirect_uri,
                                           self.state.now() + CODE_SECONDS)
        return _back(redirect_uri, {"code": code, "state": state})

    async def _access_token(self, request: web.Request) -> web.Response:
        if request.content_type == "application/json":
            fields = {k: str(v) for k, v in (await request.json()).items()}
        else:
            fields = {k: str(v) for k, v in (await request.post()).items()}
        self.oauth_exchanges.append({k: v for k, v in fields.items() if k != "client_secret"})
        as_json = "application/json" in request.headers.get("Accept", "")
        if (fields.get("client_id") != self.oauth_client_id
                or not secrets.compare_digest(fields.get("client_secret", ""),
                                              self.oauth_client_secret)):
            return _answer(as_json, {"error": "incorrect_client_credentials",
                                     "error_description": BAD_CLIENT, "error_uri": ERROR_URI})
        code = self.oauth_codes.pop(fields.get("code", ""), None)  # a code is used once
        if code is None or code.expires_at <= self.state.now():
            return _answer(as_json, {"error": "bad_verification_code",
                                     "error_description": BAD_CODE, "error_uri": ERROR_URI})
        if fields.get("redirect_uri") and fields["redirect_uri"] != code.redirect_uri:
            return _answer(as_json, {"error": "redirect_uri_mismatch",
                                     "error_description": MISMATCH, "error_uri": ERROR_URI})
        token = self.issue_user_token(code.login)
        refresh = "ghr_" + secrets.token_hex(38)
        return _answer(as_json, {"access_token": token, "expires_in": TOKEN_SECONDS,
                                 "refresh_token": refresh,
                                 "refresh_token_expires_in": REFRESH_SECONDS,
                                 "token_type": "bearer", "scope": ""})

    # the REST side

    def user_token(self, credential: str) -> UserToken | None:
        """The live user token a credential names, None when it is no user token at all;
        401 Bad credentials for one that expired or was revoked."""
        found = self.user_tokens.get(credential)
        if found is None:
            return None
        if found.revoked or found.expires_at <= self.state.now():
            raise ApiError(401, "Bad credentials")
        return found

    def authenticate_user(self, match: Match, call: Call, token: UserToken) -> object:
        op_id = match.operation.operation_id
        if op_id not in USER_OPERATIONS:
            raise ApiError(403, "Resource not accessible by integration",
                           violation=f"{op_id} with a user token: the fake models only "
                                     f"{sorted(USER_OPERATIONS)}")
        call.user = self.state.user(token.login)
        if "owner" in match.params and "repo" in match.params:
            call.repo = self.state.repos.get(f"{match.params['owner']}/{match.params['repo']}")
            if call.repo is None or not self.can_read(token.login, call.repo):
                raise ApiError(404, "Not Found")
        return ("user", token.login)

    def repo_permissions(self, user: User, repo: Repo) -> dict[str, bool]:
        order = ["read", "triage", "write", "maintain", "admin"]
        rank = order.index(self.role(user.login, repo))
        return {"pull": True, "triage": rank >= 1, "push": rank >= 2, "maintain": rank >= 3,
                "admin": rank >= 4}


def _back(redirect_uri: str, params: dict[str, Any]) -> web.Response:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    separator = "&" if "?" in redirect_uri else "?"
    raise web.HTTPFound(f"{redirect_uri}{separator}{query}")


def _answer(as_json: bool, body: dict[str, Any]) -> web.Response:
    # GitHub answers the token request 200 even for an error, in JSON only when asked.
    if as_json:
        return web.json_response(body)
    return web.Response(text=urlencode(body), content_type="application/x-www-form-urlencoded")


@route("users/get-authenticated")
def get_authenticated_user(call: Call) -> Reply:
    if call.user is None:  # an installation token has no user (GitHub answers 403 so)
        raise ApiError(403, "Resource not accessible by integration")
    body = shapes.user(call.fake, call.user)
    created = iso(call.fake.state.now())
    body.update(name=call.user.login.capitalize(), company=None, blog="", location=None,
                email=None, hireable=None, bio=None, twitter_username=None, public_repos=1,
                public_gists=0, followers=0, following=0, created_at=created,
                updated_at=created)
    return Reply(200, body)
