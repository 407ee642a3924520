"""How the fake GitHub authenticates a request: App JWTs, installation tokens, their scope."""

from __future__ import annotations

from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from tests.fakes.github_http import ApiError
from tests.fakes.github_state import GitHubState, IssuedToken, Repo

MAX_JWT_LIFETIME = 600  # GitHub refuses an `exp` more than 10 minutes ahead
_RANK = {"read": 1, "write": 2, "admin": 3}

# Operations that take the App's JWT; the manifest conversion takes no credential at all.
APP_OPERATIONS = {
    "apps/get-authenticated", "apps/get-installation", "apps/create-installation-access-token",
    "apps/list-webhook-deliveries", "apps/redeliver-webhook-delivery", "apps/get-repo-installation",
}
ANONYMOUS_OPERATIONS = {"apps/create-from-manifest"}
EITHER_OPERATIONS = {"rate-limit/get"}

# The installation permission(s) an operation needs; any one of several suffices.
_NEEDS = {
    "repos/get": ("metadata",), "repos/get-collaborator-permission-level": ("metadata",),
    "repos/get-branch": ("metadata",), "repos/get-content": ("contents",),
    "git/": ("contents",), "checks/": ("checks",), "pulls/": ("pull_requests",),
    "reactions/create-for-pull-request-review-comment": ("pull_requests",),
    "reactions/": ("issues", "pull_requests"), "issues/": ("issues", "pull_requests"),
}


def needs(operation_id: str) -> tuple[str, ...]:
    """The permissions (any of) an installation token needs for an operation."""
    for prefix, names in _NEEDS.items():
        if operation_id == prefix or (prefix.endswith("/") and operation_id.startswith(prefix)):
            return names
    return ()


def check_jwt(token: str, public_key: RSAPublicKey, app_id: int, now: float) -> dict[str, Any]:
    """The claims of a valid App JWT; ApiError 401 with GitHub's wording otherwise."""
    try:
        claims = jwt.decode(token, public_key, algorithms=["RS256"],
                            options={"verify_exp": False, "verify_iat": False,
                                     "verify_nbf": False, "verify_iss": False,
                                     "require": ["iat", "exp", "iss"]})
    except jwt.InvalidTokenError as exc:
        raise ApiError(401, "A JSON web token could not be decoded") from exc
    if str(claims["iss"]) != str(app_id):
        raise ApiError(401, "'Issuer' claim ('iss') must be the App's id")
    if not isinstance(claims["iat"], int) or claims["iat"] > now:
        raise ApiError(401, "'Issued at' claim ('iat') must be an Integer representing a time "
                            "in the past.")
    if not isinstance(claims["exp"], int) or claims["exp"] <= now:
        raise ApiError(401, "'Expiration time' claim ('exp') must be a numeric value "
                            "representing the future time at which the assertion expires.")
    if claims["exp"] > now + MAX_JWT_LIFETIME:
        raise ApiError(401, "'Expiration time' claim ('exp') is too far in the future.")
    return claims


def installation_token(state: GitHubState, credential: str) -> IssuedToken:
    """The live installation token a credential names; 401 Bad credentials otherwise."""
    issued = state.tokens.get(credential)
    if issued is None or issued.revoked or issued.expires_at <= state.now():
        raise ApiError(401, "Bad credentials")
    return issued


def check_scope(state: GitHubState, issued: IssuedToken, repo: Repo, operation_id: str,
                method: str) -> None:
    """404 for a repository outside the token's reach, 403 for a permission it lacks."""
    installation = state.installations.get(issued.installation_id)
    if installation is None or state.installation_for(repo) is not installation:
        raise ApiError(404, "Not Found")
    if issued.repository_ids is not None and repo.id not in issued.repository_ids:
        raise ApiError(404, "Not Found")
    wanted = _RANK["read" if method == "GET" else "write"]
    names = needs(operation_id)
    if names and not any(_RANK.get(issued.permissions.get(n, ""), 0) >= wanted for n in names):
        raise ApiError(403, "Resource not accessible by integration")
