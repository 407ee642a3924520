"""The fake GitHub's handler plumbing: the call they get, the reply they give, their registry."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode

from tests.fakes.github_state import IssuedToken, Repo, User

if TYPE_CHECKING:
    from tests.fakes.github import FakeGitHub

DOCS = "https://docs.github.com/rest"


@dataclass
class Call:
    """One authenticated, schema-checked request, as a handler sees it."""

    fake: FakeGitHub
    operation: str
    params: dict[str, Any]
    query: dict[str, str]
    json: Any
    token: IssuedToken | None = None  # set when an installation token authenticated the call
    repo: Repo | None = None  # set for /repos/{owner}/{repo}/... operations
    user: User | None = None  # set when a user's token (the OAuth flow's) authenticated it

    @property
    def actor(self) -> User:
        """Who GitHub says did it: the App's bot user for an installation token."""
        return self.fake.bot_user

    def need_repo(self) -> Repo:
        assert self.repo is not None, f"{self.operation} is not a repository operation"
        return self.repo

    def body(self) -> dict[str, Any]:
        return self.json if isinstance(self.json, dict) else {}


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class ApiError(Exception):
    """An error answer in GitHub's format; `violation` also fails the test (a bot bug)."""

    def __init__(self, status: int, message: str, errors: list[Any] | None = None,
                 violation: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors
        self.violation = violation

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"message": self.message, "documentation_url": DOCS,
                               "status": str(self.status)}
        if self.errors is not None:
            out["errors"] = self.errors
        return out


Handler = Callable[[Call], Reply]
HANDLERS: dict[str, Handler] = {}


def route(operation_id: str) -> Callable[[Handler], Handler]:
    """Register the handler of a documented operation (by its operationId)."""
    def register(handler: Handler) -> Handler:
        assert operation_id not in HANDLERS, operation_id
        HANDLERS[operation_id] = handler
        return handler
    return register


def not_found() -> ApiError:
    return ApiError(404, "Not Found")


def unprocessable(message: str, field_name: str | None = None, code: str = "invalid",
                  resource: str = "Resource") -> ApiError:
    errors = [{"resource": resource, "field": field_name, "code": code}] if field_name else None
    return ApiError(422, message, errors)


def check_length(value: str | None, limit: int, what: str, resource: str, field_name: str) -> None:
    """GitHub's documented size limits: 422 for the bot, and a violation for the test."""
    if value is not None and len(value) > limit:
        raise ApiError(
            422, "Validation Failed",
            [{"resource": resource, "code": "custom", "field": field_name,
              "message": f"{field_name} is too long (maximum is {limit} characters)"}],
            violation=f"{what}: {field_name} has {len(value)} characters, "
                      f"GitHub's limit is {limit}",
        )


def int_param(call: Call, name: str) -> int:
    return int(call.params[name])


Owned = TypeVar("Owned")


def owned(call: Call, rows: Mapping[int, Owned], name: str) -> Owned:
    """The row the path parameter `name` names, if it is the call's repository's; else 404."""
    found = rows.get(int_param(call, name))
    if found is None or getattr(found, "repo", None) is not call.repo:
        raise not_found()
    return found


def paginate(call: Call, items: list[Any], path: str,
             wrap: Callable[[list[Any]], Any] | None = None) -> Reply:
    """A page of `items` (`page`/`per_page` query) with GitHub's `Link` header."""
    per_page = min(int(call.query.get("per_page", 30)), 100)
    page = max(int(call.query.get("page", 1)), 1)
    chunk = items[(page - 1) * per_page:page * per_page]
    last = max((len(items) + per_page - 1) // per_page, 1)

    def link(number: int, rel: str) -> str:
        query = urlencode({**call.query, "per_page": per_page, "page": number})
        return f'<{call.fake.url}{path}?{query}>; rel="{rel}"'

    links = [link(page + 1, "next"), link(last, "last")] if page < last else []
    return Reply(200, wrap(chunk) if wrap else chunk, {"Link": ", ".join(links)} if links else {})
