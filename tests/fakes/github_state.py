"""The fake GitHub's memory: users, installations, repos, issues, pulls, comments, check runs."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.fakes.github_git import GitStore, Person

DEFAULT_PERMISSIONS = {"checks": "write", "contents": "write", "issues": "write",
                       "metadata": "read", "pull_requests": "write"}
DEFAULT_EVENTS = ["check_run", "issue_comment", "issues", "pull_request",
                  "pull_request_review_comment"]
ROLES = ("read", "triage", "write", "maintain", "admin")


@dataclass
class User:
    login: str
    id: int
    type: str = "User"  # "User", "Bot" or "Organization"


@dataclass
class Installation:
    id: int
    account: User
    repository_selection: str  # "all" or "selected"
    repository_names: set[str]  # full names, when "selected"
    permissions: dict[str, str]
    events: list[str]
    created_at: float


@dataclass
class Repo:
    id: int
    owner: User
    name: str
    default_branch: str
    private: bool
    git: GitStore
    created_at: float
    collaborators: dict[str, str] = field(default_factory=dict)  # login -> role
    fork_of: Repo | None = None

    @property
    def full_name(self) -> str:
        return f"{self.owner.login}/{self.name}"


@dataclass
class Pull:
    head_ref: str
    head_sha: str
    base_ref: str
    head_repo: Repo
    id: int = 0  # the pull request's own id; its issue has another
    draft: bool = False
    merged: bool = False
    requested_reviewers: list[User] = field(default_factory=list)


@dataclass
class Issue:
    repo: Repo
    number: int
    id: int
    title: str
    body: str | None
    user: User
    labels: list[str]
    created_at: float
    updated_at: float
    state: str = "open"
    pull: Pull | None = None


@dataclass
class Comment:
    id: int
    repo: Repo
    issue_number: int
    body: str
    user: User
    created_at: float
    updated_at: float
    via_app: bool = False


@dataclass
class ReviewComment:
    id: int
    repo: Repo
    pull_number: int
    body: str
    user: User
    path: str
    line: int | None
    diff_hunk: str
    commit_id: str
    created_at: float
    in_reply_to: int | None = None


@dataclass
class Reaction:
    id: int
    subject: tuple[str, int]  # ("issue" | "comment" | "review_comment", id)
    user: User
    content: str
    created_at: float


@dataclass
class CheckRun:
    id: int
    repo: Repo
    head_sha: str
    name: str
    status: str
    conclusion: str | None
    started_at: float | None
    completed_at: float | None
    details_url: str | None
    external_id: str | None
    output: dict[str, Any]
    actions: list[dict[str, str]]
    suite_id: int


@dataclass
class IssuedToken:
    """An installation token the fake minted, with the scope it was minted for."""

    token: str
    installation_id: int
    repository_ids: frozenset[int] | None  # None: every repository of the installation
    permissions: dict[str, str]
    expires_at: float
    revoked: bool = False


@dataclass
class HookDelivery:
    id: int
    guid: str
    event: str
    action: str | None
    status_code: int
    delivered_at: float
    redelivery: bool
    installation_id: int | None
    repository_id: int | None
    payload: dict[str, Any] | None = None


class GitHubState:
    """Everything the fake remembers; ids come from one increasing counter, so never collide."""

    def __init__(self, clock: Callable[[], float] = time.time,
                 git_root: Path | None = None) -> None:
        self.clock = clock
        self.git_root = git_root
        self._ids = itertools.count(1_000_001)
        self.users: dict[str, User] = {}
        self.installations: dict[int, Installation] = {}
        self.repos: dict[str, Repo] = {}
        self.issues: dict[tuple[str, int], Issue] = {}
        self.comments: dict[int, Comment] = {}
        self.review_comments: dict[int, ReviewComment] = {}
        self.reactions: list[Reaction] = []
        self.check_runs: dict[int, CheckRun] = {}
        self.tokens: dict[str, IssuedToken] = {}
        self.deliveries: list[HookDelivery] = []
        self.redelivered: list[int] = []
        self.manifest_codes: set[str] = set()
        self.label_ids: dict[str, int] = {}
        self.suite_ids: dict[tuple[str, str], int] = {}

    def next_id(self) -> int:
        return next(self._ids)

    def now(self) -> float:
        return self.clock()

    def user(self, login: str, type: str = "User") -> User:
        """The user with this login, created on first use."""
        if login not in self.users:
            self.users[login] = User(login, self.next_id(), type)
        return self.users[login]

    def label_id(self, name: str) -> int:
        if name not in self.label_ids:
            self.label_ids[name] = self.next_id()
        return self.label_ids[name]

    def repo(self, full_name: str) -> Repo:
        return self.repos[full_name]

    def installation_for(self, repo: Repo) -> Installation | None:
        for installation in self.installations.values():
            if repo.full_name in installation.repository_names or (
                installation.repository_selection == "all"
                and installation.account.login == repo.owner.login
            ):
                return installation
        return None

    def installation_repos(self, installation: Installation) -> list[Repo]:
        return [r for r in self.repos.values() if self.installation_for(r) is installation]

    def next_number(self, repo: Repo) -> int:
        # Issues and pull requests share one sequence per repository, as on GitHub.
        taken = [n for (name, n) in self.issues if name == repo.full_name]
        return max(taken, default=0) + 1

    def person(self, user: User) -> Person:
        return Person(user.login, f"{user.id}+{user.login}@users.noreply.github.com",
                      int(self.now()))

    def add_issue_row(self, repo: Repo, number: int | None, title: str, body: str | None,
                      user: User, labels: list[str], pull: Pull | None = None) -> Issue:
        number = number or self.next_number(repo)
        if (repo.full_name, number) in self.issues:
            raise ValueError(f"{repo.full_name}#{number} exists already")
        now = self.now()
        issue = Issue(repo, number, self.next_id(), title, body, user, list(labels), now, now,
                      pull=pull)
        self.issues[(repo.full_name, number)] = issue
        return issue

    def pulls(self, repo: Repo) -> list[Issue]:
        return [i for (name, _), i in self.issues.items()
                if name == repo.full_name and i.pull is not None]

    def refs_moved(self, repo: Repo) -> None:
        """Follow a branch update into the pull requests whose head it is."""
        for issue in self.issues.values():
            pull = issue.pull
            if pull is not None and pull.head_repo is repo:
                pull.head_sha = repo.git.refs.get(f"refs/heads/{pull.head_ref}", pull.head_sha)


def iso(epoch: float | None) -> str | None:
    """GitHub's timestamp format: `2024-05-01T12:00:00Z`."""
    if epoch is None:
        return None
    return datetime.fromtimestamp(int(epoch), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str) -> float:
    """Seconds since the epoch of an ISO 8601 timestamp (`Z` or an offset)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
