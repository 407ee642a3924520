"""Label, comment and check-run-button handlers: decide, write a Run row, acknowledge."""

from __future__ import annotations

import logging
from typing import Any

from gidgethub import routing, sansio

from bot.commands import approvals, replies, verbs
from bot.commands.context import Context
from bot.commands.grammar import Command, CommandError, parse_commands, usage_text
from bot.commands.sources import (
    Source,
    authorised,
    is_bot,
    is_the_app,
    issue_source,
    reply,
)
from bot.config.repo import (
    APPROVAL_REQUIRED,
    PROFILE_LABEL_PREFIX,
    PROFILE_NAME,
    ConfigError,
    Effective,
)

log = logging.getLogger(__name__)

router = routing.Router()


@router.register("issues", action="labeled")
async def on_issue_labeled(event: sansio.Event, ctx: Context) -> None:
    """The trigger label (the repo config's, else the operator's) on an issue starts a run."""
    label = (event.data.get("label") or {}).get("name")
    sender = event.data["sender"]
    if not label or is_the_app(ctx, sender) or "pull_request" in event.data["issue"]:
        return
    source = issue_source(event, None)
    gh = ctx.github.installation(source.installation_id)
    config = await verbs.repo_config(ctx, source)
    profile = _profile_of(label)
    if isinstance(config, ConfigError):
        # Only a trigger label is worth a reply; other labels come and go all day.
        if (label == ctx.settings.trigger_label or profile) and await authorised(
                ctx, gh, source, quiet=True):
            await reply(ctx, gh, source, replies.CONFIG_INVALID.format(
                login=source.login, error=config))
        return
    if label == config.trigger_label:
        profile = None
    elif profile is None:
        return
    if not await _may_trigger(ctx, gh, source, config, quiet=True):
        return
    if profile is not None:
        # `agent:backend` is the trigger label with the profile `backend`.
        chosen = await verbs.profiled(ctx, gh, source, config, profile)
        if chosen is None:
            return
        config = chosen
    if (config.approval == APPROVAL_REQUIRED
            and not await verbs.author_writes(ctx, gh, source, config)):
        # The label says "run this issue", but an outsider wrote it (and may edit it until
        # the run starts): a writer approves the text itself.
        new = await verbs.new_run_for(ctx, gh, source, trigger="label", command=None,
                                      config=config)
        if new is not None and not await verbs.refuse_variants_for_approval(
                ctx, gh, source, new):
            author = (source.author or {}).get("login") or "someone"
            new = await verbs.with_session(ctx, new, fresh=False)
            await approvals.request(ctx, gh, source, new, why=replies.WHY_AUTHOR.format(
                kind=source.kind, author=author))
        return
    await verbs.start_run(ctx, gh, source, trigger="label", command=None, config=config)


def _profile_of(label: str) -> str | None:
    """The profile an `agent:NAME` label names, or None for any other label."""
    if not label.lower().startswith(PROFILE_LABEL_PREFIX):
        return None
    name = label[len(PROFILE_LABEL_PREFIX):].strip()
    return name.lower() if PROFILE_NAME.fullmatch(name) else None


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
        comment_id=comment["id"],
        title=pull.get("title") or "",
        body=pull.get("body") or "",
        context=approvals.review_context(comment),
        pull=pull,
        author=pull.get("user"),
    )
    await _on_command_comment(ctx, source, comment.get("body"))


async def _on_command_comment(ctx: Context, source: Source, body: str | None) -> None:
    if is_the_app(ctx, source.sender):
        return
    parsed = parse_commands(body)
    if not parsed:
        return  # most comments are not for us: no GitHub call at all
    first = parsed[0]  # one command per comment; the rest are ignored (see docs)
    gh = ctx.github.installation(source.installation_id)
    if is_bot(source.sender):
        if not await _may_trigger(ctx, gh, source, None, quiet=False):
            return
    elif not await authorised(ctx, gh, source, quiet=True):
        await _from_outsider(ctx, gh, source, first)
        return
    label = ctx.settings.trigger_label
    if isinstance(first, CommandError):
        await reply(ctx, gh, source, replies.COMMAND_ERROR.format(
            login=source.login, message=first.message, usage=usage_text(label)))
        return
    await verbs.VERBS[first.verb](ctx, gh, source, first)


async def _from_outsider(ctx: Context, gh: Any, source: Source,
                         first: Command | CommandError) -> None:
    """A person without write access: a run they ask for waits for a writer's approval
    (unless the repo config says `approval: writers_only`); any other verb is refused."""
    if isinstance(first, Command) and first.verb == "run":
        config = await verbs.repo_config(ctx, source)
        if not isinstance(config, ConfigError) and config.approval == APPROVAL_REQUIRED:
            trigger = "review_comment" if source.context else "comment"
            new = await verbs.new_run_for(ctx, gh, source, trigger=trigger, command=first,
                                          config=config, sender_writes=False)
            if new is not None and not await verbs.refuse_variants_for_approval(
                    ctx, gh, source, new):
                new = await verbs.with_session(ctx, new, fresh=first.fresh)
                await approvals.request(ctx, gh, source, new, why=replies.WHY_SENDER)
            return
    await reply(ctx, gh, source, replies.NOT_ALLOWED.format(login=source.login))


async def _may_trigger(ctx: Context, gh: Any, source: Source, config: Effective | None, *,
                       quiet: bool) -> bool:
    """People need write access; bots need to be in the repo config's `allowed_bots`."""
    if not is_bot(source.sender):
        return await authorised(ctx, gh, source, quiet=quiet)
    if config is None:
        loaded = await verbs.repo_config(ctx, source)
        if isinstance(loaded, ConfigError):
            return False  # a bot does not read replies; the config's error waits for a human
        config = loaded
    allowed = config.allows_bot(source.login)
    if not allowed:
        log.info("ignoring a bot that allowed_bots does not list",
                 extra={"login": source.login, "repo": source.repo_full_name})
    return allowed
