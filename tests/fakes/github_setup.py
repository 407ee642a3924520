"""Helpers tests use to arrange the fake GitHub's state and to read it back."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tests.fakes.github_git import GitStore
from tests.fakes.github_state import (
    DEFAULT_EVENTS,
    DEFAULT_PERMISSIONS,
    ROLES,
    CheckRun,
    Comment,
    GitHubState,
    HookDelivery,
    Installation,
    Issue,
    IssuedToken,
    Pull,
    Repo,
    ReviewComment,
)

Files = Mapping[str, bytes | tuple[str, bytes] | None]


class FakeGitHubSetup:
    """State helpers of FakeGitHub (kept apart from its HTTP side)."""

    state: GitHubState
    git_root: Path | None
    html_url: str

    def add_installation(self, installation_id: int | None = None, account: str = "octo-org",
                         *, account_type: str = "Organization",
                         repositories: Iterable[str] | None = None,
                         permissions: Mapping[str, str] | None = None,
                         events: Iterable[str] | None = None) -> Installation:
        """Install the App on `account`: on all its repos, or on `repositories` (full names)."""
        state = self.state
        owner = state.user(account, account_type)
        installation = Installation(
            installation_id or state.next_id(), owner,
            "all" if repositories is None else "selected", set(repositories or ()),
            dict(permissions or DEFAULT_PERMISSIONS), list(events or DEFAULT_EVENTS),
            state.now())
        state.installations[installation.id] = installation
        return installation

    def add_repo(self, owner: str, name: str, default_branch: str = "main",
                 files: Files | None = None, *, private: bool = False,
                 repo_id: int | None = None) -> Repo:
        """A repository whose default branch holds one commit with `files` ({path: bytes})."""
        state = self.state
        path = self.git_root / owner / f"{name}.git" if self.git_root else None
        repo = Repo(repo_id or state.next_id(), state.user(owner, "Organization"), name,
                    default_branch, private, GitStore(path, default_branch), state.now())
        content: dict[str, bytes | tuple[str, bytes] | None] = \
            dict(files) if files is not None else {"README.md": f"# {name}\n".encode()}
        first = repo.git.commit_files(content, None, "Initial commit",
                                      state.person(repo.owner))
        repo.git.set_ref(f"refs/heads/{default_branch}", first)
        state.repos[repo.full_name] = repo
        return repo

    def push(self, repo: str | Repo, files: dict[str, bytes | tuple[str, bytes] | None], *,
             branch: str | None = None, message: str = "Change files",
             user: str = "octocat") -> str:
        """A new commit on `branch` (the default one) writing or, for None, deleting files."""
        found = self._repo(repo)
        ref = f"refs/heads/{branch or found.default_branch}"
        head = found.git.commit_files(dict(files), found.git.refs.get(ref), message,
                                      self.state.person(self.state.user(user)))
        found.git.set_ref(ref, head)
        self.state.refs_moved(found)
        return head

    def add_collaborator(self, repo: str | Repo, login: str, permission: str = "write") -> None:
        """Give `login` a role on the repo: read, triage, write, maintain or admin."""
        assert permission in ROLES, permission
        self._repo(repo).collaborators[login] = permission
        self.state.user(login)

    def add_issue(self, repo: str | Repo, number: int | None = None, *,
                  title: str = "Fix the frobnicator", body: str | None = "It frobs twice.",
                  user: str = "octocat", labels: Iterable[str] = (),
                  user_type: str = "User") -> Issue:
        """An open issue (its number continues the repo's issue/PR sequence when omitted)."""
        return self.state.add_issue_row(self._repo(repo), number, title, body,
                                        self.state.user(user, user_type), list(labels))

    def add_pull(self, repo: str | Repo, number: int | None = None, head_ref: str = "feature",
                 head_sha: str | None = None, base_ref: str | None = None, fork: bool = False,
                 *, files: Files | None = None, title: str = "Add the feature",
                 body: str | None = "Please review.", user: str = "octocat",
                 draft: bool = False) -> Issue:
        """An open PR; without `head_sha`, its head is a new commit on base writing `files`."""
        base_repo, state = self._repo(repo), self.state
        base_ref = base_ref or base_repo.default_branch
        author = state.user(user)
        head_repo = base_repo
        if fork:
            head_repo = self._fork(base_repo, author.login)
        if head_sha is None:
            parent = base_repo.git.resolve(base_ref)
            head_sha = head_repo.git.commit_files(
                dict(files) if files is not None else {f"{head_ref}.txt": b"work\n"},
                parent, title, state.person(author))
        if head_repo.git.kind(head_sha) == "commit":
            head_repo.git.set_ref(f"refs/heads/{head_ref}", head_sha)
        if fork:  # GitHub makes a fork PR's commits reachable from the base repo
            base_repo.git.absorb(head_repo.git)
        pull = Pull(head_ref, head_sha, base_ref, head_repo, id=state.next_id(), draft=draft)
        issue = state.add_issue_row(base_repo, number, title, body, author, [], pull)
        if base_repo.git.kind(head_sha) == "commit":
            base_repo.git.set_ref(f"refs/pull/{issue.number}/head", head_sha)
        return issue

    def _fork(self, base: Repo, owner: str) -> Repo:
        key = f"{owner}/{base.name}"
        if key not in self.state.repos:
            fork = Repo(self.state.next_id(), self.state.user(owner), base.name,
                        base.default_branch, base.private, GitStore(None), self.state.now(),
                        fork_of=base)
            fork.git.absorb(base.git)
            self.state.repos[key] = fork
        return self.state.repos[key]

    def add_comment(self, repo: str | Repo, issue_number: int, body: str, *,
                    user: str = "octocat", user_type: str = "User") -> Comment:
        """An existing comment on an issue or PR (the App's own with user=the bot's login)."""
        repo_row, state = self._repo(repo), self.state
        author = state.user(user, user_type)
        now = state.now()
        comment = Comment(state.next_id(), repo_row, issue_number, body, author, now, now,
                          via_app=author.type == "Bot")
        state.comments[comment.id] = comment
        return comment

    def add_review_comment(self, repo: str | Repo, pull_number: int, body: str, *,
                           user: str = "octocat", path: str = "README.md", line: int | None = 1,
                           diff_hunk: str = "@@ -1 +1 @@\n-old\n+new") -> ReviewComment:
        """A review comment on a PR's diff."""
        repo_row, state = self._repo(repo), self.state
        pull = state.issues[(repo_row.full_name, pull_number)].pull
        assert pull is not None, f"#{pull_number} is not a pull request"
        comment = ReviewComment(state.next_id(), repo_row, pull_number, body, state.user(user),
                                path, line, diff_hunk, pull.head_sha, state.now())
        state.review_comments[comment.id] = comment
        return comment

    def add_hook_delivery(self, event: str, action: str | None = None, *,
                          guid: str | None = None, status_code: int = 202,
                          installation_id: int | None = None, repository_id: int | None = None,
                          payload: dict[str, Any] | None = None,
                          delivered_at: float | None = None) -> HookDelivery:
        """A delivery in the App's webhook log (what `GET /app/hook/deliveries` lists)."""
        state = self.state
        delivery = HookDelivery(state.next_id(), guid or str(uuid.uuid4()), event, action,
                                status_code, delivered_at or state.now(), False,
                                installation_id, repository_id, payload)
        state.deliveries.append(delivery)
        return delivery

    def add_manifest_code(self, code: str) -> None:
        """A one-time code `POST /app-manifests/{code}/conversions` accepts."""
        self.state.manifest_codes.add(code)

    # reading back

    def _repo(self, repo: str | Repo) -> Repo:
        return repo if isinstance(repo, Repo) else self.state.repos[repo]

    def repo(self, full_name: str) -> Repo:
        return self.state.repos[full_name]

    def files(self, repo: str | Repo, ref: str) -> dict[str, tuple[str, bytes]]:
        """{path: (mode, bytes)} of a commit, tree, branch or tag."""
        git = self._repo(repo).git
        sha = ref if git.kind(ref) in ("tree", "commit") else git.resolve(ref)
        assert sha is not None, f"nothing named {ref!r}"
        return git.files(sha)

    def comments(self, repo: str | Repo, issue_number: int) -> list[Comment]:
        found = self._repo(repo)
        return [c for c in self.state.comments.values()
                if c.repo is found and c.issue_number == issue_number]

    def check_runs(self, repo: str | Repo | None = None) -> list[CheckRun]:
        return [r for r in self.state.check_runs.values()
                if repo is None or r.repo is self._repo(repo)]

    def pull(self, repo: str | Repo, number: int) -> Issue:
        return self.state.issues[(self._repo(repo).full_name, number)]

    def pulls(self, repo: str | Repo) -> list[Issue]:
        return self.state.pulls(self._repo(repo))

    def reactions(self, kind: str, subject_id: int) -> list[str]:
        """Contents of the reactions on ("issue" | "comment" | "review_comment", id)."""
        return [r.content for r in self.state.reactions if r.subject == (kind, subject_id)]

    def token_info(self, token: str) -> IssuedToken:
        """What the fake knows of a token it minted: installation, repositories, permissions."""
        return self.state.tokens[token]

    def clone_url(self, repo: Repo) -> str:
        """A file:// URL real git can clone when repos live on disk; GitHub's form otherwise."""
        if repo.git.path is not None:
            return repo.git.path.resolve().as_uri()
        return f"{self.html_url}/{repo.full_name}.git"
