"""Where a trigger came from, who sent it, and how to answer there."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from gidgethub import sansio

from bot.commands import replies
from bot.commands.context import Context

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Source:
    """Where a trigger came from: the issue, pull request or comment, and who sent it."""

    event: sansio.Event
    installation_id: int
    repo: dict[str, Any]
    number: int
    is_pull_request: bool
    sender: dict[str, Any]
    comment_id: int | None = None
    title: str = ""
    body: str = ""
    context: dict[str, Any] = field(default_factory=dict)
    pull: dict[str, Any] | None = None  # the PR object when the payload carries one
    author: dict[str, Any] | None = None  # who wrote the issue or PR (its title and body)

    @property
    def login(self) -> str:
        return str(self.sender.get("login", ""))

    @property
    def kind(self) -> str:
        return replies.kind_of(self.is_pull_request)

    @property
    def repo_full_name(self) -> str:
        return str(self.repo["full_name"])

    def owner_repo(self) -> dict[str, str]:
        owner, _, name = self.repo_full_name.partition("/")
        return {"owner": owner, "repo": name}


def is_the_app(ctx: Context, sender: dict[str, Any]) -> bool:
    """The App's own comments and labels never trigger it, whatever the config says."""
    login = ctx.app_login or getattr(ctx.github, "app_login", None)
    return login is not None and sender.get("login") == login


def is_bot(sender: dict[str, Any]) -> bool:
    return sender.get("type") == "Bot" or str(sender.get("login", "")).endswith("[bot]")


def ignored_sender(ctx: Context, sender: dict[str, Any]) -> bool:
    """Senders that never act without the repo config: bots, and the App itself."""
    return is_bot(sender) or is_the_app(ctx, sender)


async def reply(ctx: Context, gh: Any, source: Source, body: str, tag: str = "reply") -> None:
    await replies.reply_once(
        ctx, gh, key=f"{tag}:{source.event.delivery_id}",
        repo_full_name=source.repo_full_name, number=source.number, body=body)


async def writes(ctx: Context, gh: Any, source: Source, login: str) -> bool:
    """Whether `login` has write, maintain or admin permission on the source's repository."""
    return bool(login) and await ctx.permissions.may_trigger(gh, source.repo_full_name, login)


async def authorised(ctx: Context, gh: Any, source: Source, *, quiet: bool = False) -> bool:
    if await writes(ctx, gh, source, source.login):
        return True
    log.info("sender may not trigger", extra={"login": source.login,
                                              "repo": source.repo_full_name})
    if not quiet:
        await reply(ctx, gh, source, replies.NOT_ALLOWED.format(login=source.login))
    return False


def issue_source(event: sansio.Event, comment: dict[str, Any] | None) -> Source:
    data = event.data
    issue = data["issue"]
    return Source(
        event=event,
        installation_id=data["installation"]["id"],
        repo=data["repository"],
        number=issue["number"],
        is_pull_request="pull_request" in issue,
        sender=data["sender"],
        comment_id=comment["id"] if comment else None,
        title=issue.get("title") or "",
        body=issue.get("body") or "",
        author=issue.get("user"),
    )


def run_link(source: Source, run: Any) -> str:
    """` ([details](...))` linking the run's check run, when it has one."""
    if run.check_run_id:
        return f" ([details]({source.repo['html_url']}/runs/{run.check_run_id}))"
    return ""
