"""Label, comment and check-run-button handlers: decide, write a Run row, acknowledge."""

from __future__ import annotations

import logging

from gidgethub import routing, sansio

from bot import replies, verbs
from bot.commands import CommandError, parse_commands, usage_text
from bot.context import Context
from bot.sources import Source, acknowledge, authorised, ignored_sender, issue_source, reply

log = logging.getLogger(__name__)

router = routing.Router()


@router.register("issues", action="labeled")
async def on_issue_labeled(event: sansio.Event, ctx: Context) -> None:
    """The trigger label on an issue starts a run for it."""
    label = (event.data.get("label") or {}).get("name")
    if label != ctx.settings.trigger_label or ignored_sender(ctx, event.data["sender"]):
        return
    source = issue_source(event, None)
    gh = ctx.github.installation(source.installation_id)
    # Labelling needs triage access already; no reply to people who cannot trigger.
    if not await authorised(ctx, gh, source, quiet=True):
        return
    await acknowledge(gh, source)
    await verbs.start_run(ctx, gh, source, trigger="label", command=None)


@router.register("issue_comment", action="created")
async def on_issue_comment(event: sansio.Event, ctx: Context) -> None:
    """`/agent ...` in a new comment on an issue or a pull request."""
    comment = event.data["comment"]
    await _on_command_comment(ctx, issue_source(event, comment), comment.get("body"))


@router.register("pull_request_review_comment", action="created")
async def on_review_comment(event: sansio.Event, ctx: Context) -> None:
    """`/agent ...` in a review comment: the file, line and diff hunk join the prompt."""
    data = event.data
    comment, pull = data["comment"], data["pull_request"]
    owner, _, name = data["repository"]["full_name"].partition("/")
    source = Source(
        event=event,
        installation_id=data["installation"]["id"],
        repo=data["repository"],
        number=pull["number"],
        is_pull_request=True,
        sender=data["sender"],
        reaction_url="/repos/{owner}/{repo}/pulls/comments/{comment_id}/reactions",
        reaction_vars={"owner": owner, "repo": name, "comment_id": comment["id"]},
        comment_id=comment["id"],
        title=pull.get("title") or "",
        body=pull.get("body") or "",
        context={
            "path": comment.get("path"),
            "line": comment.get("line") or comment.get("original_line"),
            "start_line": comment.get("start_line"),
            "side": comment.get("side"),
            "diff_hunk": comment.get("diff_hunk"),
            "commit_id": comment.get("commit_id"),
        },
        pull=pull,
    )
    await _on_command_comment(ctx, source, comment.get("body"))


async def _on_command_comment(ctx: Context, source: Source, body: str | None) -> None:
    if ignored_sender(ctx, source.sender):
        return
    parsed = parse_commands(body)
    if not parsed:
        return  # most comments are not for us: no GitHub call at all
    first = parsed[0]  # one command per comment; the rest are ignored (see docs)
    gh = ctx.github.installation(source.installation_id)
    if not await authorised(ctx, gh, source):
        return
    await acknowledge(gh, source)
    label = ctx.settings.trigger_label
    if isinstance(first, CommandError):
        await reply(ctx, gh, source, replies.COMMAND_ERROR.format(
            login=source.login, message=first.message, usage=usage_text(label)))
        return
    await verbs.VERBS[first.verb](ctx, gh, source, first)
