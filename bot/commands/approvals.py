"""Approvals: a run asked for by someone without write access waits for a writer's yes.

The approval is bound to what the prompt is built from: the request keeps a hash of the
title, body, request text and review-comment context, and an approval starts the run only
while GitHub still shows the same. An edit after the approval, before the run starts, sends
the run back to wait for a new one.
"""

from __future__ import annotations

import logging
from typing import Any

from gidgethub import BadRequest, routing, sansio

from bot.commands import replies
from bot.commands.context import Context
from bot.commands.grammar import Command, parse_commands
from bot.commands.sources import Source, is_the_app, issue_source, reply, run_link
from bot.config.settings import format_duration
from bot.markdown import clip
from bot.runs import ledger
from bot.runs.prompt import changed_inputs, inputs_digest, inputs_of, run_inputs
from bot.store.tables import RunState

log = logging.getLogger(__name__)

router = routing.Router()

# The most of a request the reply quotes: a comment may hold 65,536 characters, and the
# reply must stay under the same limit with its own text around the quote.
REQUEST_SHOWN_MAX = 20_000


def review_context(comment: dict[str, Any]) -> dict[str, Any]:
    """What a review comment adds to the prompt: its file, line and diff hunk."""
    return {
        "path": comment.get("path"),
        "line": comment.get("line") or comment.get("original_line"),
        "start_line": comment.get("start_line"),
        "side": comment.get("side"),
        "diff_hunk": comment.get("diff_hunk"),
        "commit_id": comment.get("commit_id"),
    }


def request_text(body: str | None) -> str:
    """The instructions of the comment's first `/agent` command (nothing if it has none)."""
    parsed = parse_commands(body)
    first = parsed[0] if parsed else None
    return first.text.strip() if isinstance(first, Command) and first.verb == "run" else ""


def ttl_text(seconds: int) -> str:
    """`7 days`, `1 day`, or the short form of a duration that is not whole days."""
    days, rest = divmod(int(seconds), 86400)
    if days and not rest:
        return f"{days} day" + ("s" if days > 1 else "")
    return format_duration(seconds)


def _fenced(text: str) -> str:
    """A code block no backtick run inside it can close (it also keeps @mentions quiet)."""
    longest = run = 0
    for char in text:
        run = run + 1 if char == "`" else 0
        longest = max(longest, run)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text}\n{fence}"


async def request(ctx: Context, gh: Any, source: Source, new: ledger.NewRun, *,
                  why: str) -> None:
    """Write the run as awaiting approval and tell the maintainers how to approve it."""
    outcome = await ledger.create_run(ctx.db, new, RunState.AWAITING_APPROVAL)
    if isinstance(outcome, ledger.AlreadyActive):
        active = outcome.run
        await reply(ctx, gh, source, replies.ALREADY_ACTIVE.format(
            login=source.login, run_id=active.id, state=RunState(active.state).value,
            kind=source.kind, link=run_link(source, active)))
        return
    run_id = outcome.run_id if isinstance(outcome, ledger.Created) else outcome.run.id
    if isinstance(outcome, ledger.Created):
        ctx.on_run_change()
    instructions = new.instructions.strip()
    await reply(ctx, gh, source, replies.AWAITING_APPROVAL.format(
        login=source.login, why=why, run_id=run_id, kind=source.kind,
        request=replies.REQUEST_QUOTED.format(
            block=_fenced(clip(instructions, REQUEST_SHOWN_MAX)))
        if instructions else "",
        parts=replies.APPROVAL_PARTS[(source.is_pull_request, bool(instructions))],
        digest=(new.inputs_sha256 or "")[:16], ttl=ttl_text(ctx.settings.approval_ttl)))


async def current_inputs(gh: Any, run: Any) -> dict[str, Any]:
    """What the run's prompt would be built from if it were asked for now, read on GitHub."""
    owner, _, repo = run.repo_full_name.partition("/")
    where = {"owner": owner, "repo": repo}
    issue = await gh.getitem("/repos/{owner}/{repo}/issues/{issue_number}",
                             {**where, "issue_number": run.number})
    instructions, context = run.instructions, dict(run.context or {})
    if run.comment_id and run.trigger in ("comment", "review_comment"):
        url = ("/repos/{owner}/{repo}/pulls/comments/{comment_id}"
               if run.trigger == "review_comment"
               else "/repos/{owner}/{repo}/issues/comments/{comment_id}")
        try:
            comment: dict[str, Any] | None = await gh.getitem(
                url, {**where, "comment_id": run.comment_id})
        except BadRequest as exc:
            if exc.status_code.value != 404:
                raise
            comment = None  # deleted: the request is gone
        instructions = request_text(comment.get("body") if comment else None)
        if run.trigger == "review_comment":
            context.update(review_context(comment or {}))
    commit = None
    if run.is_pull_request:
        pull = await gh.getitem("/repos/{owner}/{repo}/pulls/{pull_number}",
                                {**where, "pull_number": run.number})
        commit = pull["head"]["sha"]
    return inputs_of(issue.get("title"), issue.get("body"), instructions, context, commit)


def _stored(run: Any, inputs: dict[str, Any], digest: str) -> dict[str, Any]:
    """The run's columns for `inputs` (a fork's record stays as it was)."""
    context = dict(inputs["context"])
    if (run.context or {}).get("fork"):
        context["fork"] = run.context["fork"]
    stored = {"title": inputs["title"], "body": inputs["body"],
              "instructions": inputs["instructions"], "context": context,
              "inputs_sha256": digest}
    if run.is_pull_request:
        stored["base_sha"] = inputs["commit"]
    return stored


def _changed(run: Any, fresh: dict[str, Any]) -> str:
    before = run_inputs(run)
    names = changed_inputs(before, fresh) or ["text"]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


async def approve(ctx: Context, gh: Any, source: Source, run: Any) -> bool:
    """Start the run if GitHub still shows what was asked for; else say what changed, keep
    the request as it is now, and wait for a new approval. True when it was started."""
    fresh = await current_inputs(gh, run)
    digest = inputs_digest(fresh)
    if digest != run.inputs_sha256:
        changed = _changed(run, fresh)
        async with ctx.db.begin() as conn:
            updated = await ledger.update_if(conn, run.id, RunState.AWAITING_APPROVAL,
                                             **_stored(run, fresh, digest))
        if updated:
            log.info("approval refused: the inputs changed", extra={
                "run_id": run.id, "changed": changed, "login": source.login})
            await reply(ctx, gh, source, replies.APPROVAL_CHANGED.format(
                login=source.login, run_id=run.id, changed=changed, kind=source.kind,
                digest=digest[:16]))
        return False
    moved = await ledger.transition(ctx.db, run.id, RunState.QUEUED,
                                    f"approved by @{source.login}", approved_by=source.login,
                                    approved_at=ctx.clock())
    if moved:
        ctx.on_run_change()
    return moved


async def deny(ctx: Context, source: Source, run: Any) -> bool:
    """End a run that waits for approval as `denied`."""
    reason = replies.DENIED_REASON.format(login=source.login)
    moved = await ledger.transition(ctx.db, run.id, RunState.DENIED, reason, error=reason)
    if moved:
        ctx.on_run_change()
    return moved


async def _waiting(ctx: Context, gh: Any, source: Source) -> Any | None:
    run = await ledger.active_run(ctx.db, source.repo["id"], source.number)
    if run is None or run.state != RunState.AWAITING_APPROVAL.value:
        await reply(ctx, gh, source, replies.NOTHING_TO_APPROVE.format(
            login=source.login, kind=source.kind))
        return None
    return run


async def approve_verb(ctx: Context, gh: Any, source: Source, command: Command) -> None:
    run = await _waiting(ctx, gh, source)
    if run is not None:
        await approve(ctx, gh, source, run)


async def deny_verb(ctx: Context, gh: Any, source: Source, command: Command) -> None:
    run = await _waiting(ctx, gh, source)
    if run is not None:
        await deny(ctx, source, run)


async def recheck(ctx: Context, gh: Any, source: Source, run: Any) -> bool:
    """An approved run that has not started yet: if what it was approved on changed, it
    goes back to wait for a new approval, and the approver is told what changed."""
    fresh = await current_inputs(gh, run)
    digest = inputs_digest(fresh)
    if digest == run.inputs_sha256:
        return False
    changed = _changed(run, fresh)
    moved = await ledger.transition(
        ctx.db, run.id, RunState.AWAITING_APPROVAL, f"the {changed} changed after the approval",
        approved_by=None, approved_at=None, **_stored(run, fresh, digest))
    if moved:
        log.info("approval withdrawn: the inputs changed", extra={
            "run_id": run.id, "changed": changed})
        ctx.on_run_change()
        await reply(ctx, gh, source, replies.APPROVAL_CHANGED.format(
            login=run.approved_by, run_id=run.id, changed=changed,
            kind=replies.kind_of(run.is_pull_request), digest=digest[:16]))
    return moved


async def _edited(event: sansio.Event, ctx: Context, number: int,
                  comment: dict[str, Any] | None) -> None:
    if is_the_app(ctx, event.data["sender"]):
        return  # the App editing its status comment, many times a run
    run = await ledger.active_run(ctx.db, event.data["repository"]["id"], number)
    if run is None or run.state != RunState.QUEUED.value or not run.approved_by:
        return  # only an approved run that has not started is bound to its inputs here
    source = issue_source(event, comment) if "issue" in event.data else Source(
        event=event, installation_id=event.data["installation"]["id"],
        repo=event.data["repository"], number=number, is_pull_request=True,
        sender=event.data["sender"])
    await recheck(ctx, ctx.github.installation(source.installation_id), source, run)


@router.register("issues", action="edited")
async def on_issue_edited(event: sansio.Event, ctx: Context) -> None:
    """A title or description edited after an approval, before the run started."""
    await _edited(event, ctx, event.data["issue"]["number"], None)


@router.register("issue_comment", action="edited")
@router.register("issue_comment", action="deleted")
async def on_comment_changed(event: sansio.Event, ctx: Context) -> None:
    """The request's comment edited or deleted after an approval."""
    await _edited(event, ctx, event.data["issue"]["number"], event.data["comment"])


@router.register("pull_request_review_comment", action="edited")
@router.register("pull_request_review_comment", action="deleted")
async def on_review_comment_changed(event: sansio.Event, ctx: Context) -> None:
    """The request's review comment edited or deleted after an approval."""
    await _edited(event, ctx, event.data["pull_request"]["number"], None)
