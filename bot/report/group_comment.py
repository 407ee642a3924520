"""A group's one status comment: a table of its variants that fills in as they finish, and
the pick."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from bot.config.budget import format_dollars
from bot.github import effects
from bot.markdown import clip, code_span
from bot.redact import redact
from bot.report.text import ICONS, Usage, duration
from bot.store.tables import ACTIVE_STATES, RunState, aware

COMMENT_MAX = 65_000  # GitHub takes 65,536 characters
GROUP_HEAD = "### {icon} agentbot: {size} variants · {finished} of {size} finished\n\n"
GROUP_ASKED = "Asked for by @{login}{retry}. Each variant ran in its own sandbox and is on its " \
              "own branch; no pull request is opened until one is picked.\n\n"
GROUP_RETRY = " (a retry of group {group_id})"
TABLE_HEAD = ("| # | agent | model | state | files | lines | took | usage | links |\n"
              "|---|---|---|---|---|---|---|---|---|\n")
ROW = "| {k} | {agent} | {model} | {icon} {state} | {files} | {lines} | {took} | {usage} | " \
      "{links} |\n"
WORKING = "The table fills in as the variants finish; then keep one with `/agent pick K`."
PICK_NOW = ("Keep one: comment `/agent pick K` (people with write access). agentbot opens its "
            "pull request as a single run would, and deletes the other variants' branches.")
NONE_SUCCEEDED = ("No variant succeeded with changes, so there is nothing to pick. Comment "
                  "`/agent retry` to run the group again.")
PICKING = "@{login} picked variant {variant}; agentbot is opening its pull request."
PICKED_PR = ("@{login} picked variant {variant}: {draft}pull request #{number} {url}. The other "
             "variants' branches are deleted.")
PICKED_PUSHED = ("@{login} picked variant {variant}: its commit {sha} is now on `{branch}`. "
                 "The variants' branches are deleted.")
PICK_FAILED = ("@{login} picked variant {variant}, but agentbot could not carry it out: "
               "{error}\n\nPick again with `/agent pick K`.")
NONE = "–"


def group_marker(group_id: int) -> str:
    """The effect key of the group's comment (also its marker, to find it after a crash)."""
    return f"status_comment:group-{group_id}"


def variant_row(run: Any, usage: Usage | None, links: list[str],
                now: dt.datetime) -> str:
    """One variant's row: what ran, how it ended, what it changed and cost, and where."""
    state = RunState(run.state)
    stats = (run.result or {}).get("stats") or {}
    final = state not in ACTIVE_STATES
    files = lines = NONE
    if final and run.result is not None:
        files = str(stats.get("files_changed", len((run.result or {}).get("changes") or [])))
        if "additions" in stats:
            lines = f"+{int(stats.get('additions') or 0)} −{int(stats.get('deletions') or 0)}"
    took = NONE
    if run.started_at is not None:
        end = aware(run.finished_at) if run.finished_at is not None else now
        took = duration((end - aware(run.started_at)).total_seconds())
    spent = NONE
    if usage is not None:
        spent = f"{usage.input + usage.output:,} tokens"
        if usage.cost and not usage.unpriced:
            spent += f", {format_dollars(usage.cost)}"
        elif usage.cost:
            spent += f", over {format_dollars(usage.cost)}"
    shown = state.value.replace("_", " ")
    if state is RunState.SUCCEEDED and (run.result or {}).get("status") == "no_changes":
        shown = "no changes"
    return ROW.format(k=run.variant, agent=code_span(run.agent, 40),
                      model=code_span(run.model, 60) if run.model else NONE,
                      icon=ICONS[state], state=shown, files=files, lines=lines, took=took,
                      usage=spent, links=" · ".join(links) or NONE)


def links_of(run: Any, check_url: str | None, run_url: str | None,
             deleted: bool) -> list[str]:
    """The check run, the run page, and the compare view of the variant's branch."""
    links = []
    if check_url:
        links.append(f"[check run]({check_url})")
    if run_url:
        links.append(f"[run page]({run_url})")
    if check_url and run.branch and run.commit_sha and run.base_sha and not deleted:
        # The check run's address starts with the repository's on GitHub (or GHES).
        repo_url = check_url.rsplit("/runs/", 1)[0]
        links.append(f"[compare]({repo_url}/compare/{run.base_sha}...{run.branch})")
    return links


def group_comment_body(group: Any, variants: list[Any], rows: list[str]) -> str:
    """The comment as the group is now, with its marker."""
    finished = sum(1 for run in variants if RunState(run.state) not in ACTIVE_STATES)
    icon = ICONS[RunState.RUNNING] if finished < len(variants) else "🔀"
    text = GROUP_HEAD.format(icon=icon, size=group.size, finished=finished)
    retry = GROUP_RETRY.format(group_id=group.retry_of) if group.retry_of else ""
    text += GROUP_ASKED.format(login=group.sender_login, retry=retry)
    text += TABLE_HEAD + "".join(rows) + "\n" + _footer(group, variants, finished)
    return effects.tagged(clip(redact(text), COMMENT_MAX), group_marker(group.id))


def _footer(group: Any, variants: list[Any], finished: int) -> str:
    picked = next((run for run in variants if run.variant == group.picked_variant), None)
    if group.pick_state == "done" and picked is not None:
        if picked.pr_number:
            draft = "draft " if (picked.config or {}).get("draft", True) else ""
            return PICKED_PR.format(login=group.picked_by, variant=group.picked_variant,
                                    draft=draft, number=picked.pr_number,
                                    url=picked.pr_url or "")
        return PICKED_PUSHED.format(login=group.picked_by, variant=group.picked_variant,
                                    sha=(picked.commit_sha or "")[:12],
                                    branch=picked.head_ref or picked.branch or "")
    if group.pick_state == "pending":
        return PICKING.format(login=group.picked_by, variant=group.picked_variant)
    if group.pick_state == "failed":
        return PICK_FAILED.format(login=group.picked_by, variant=group.picked_variant,
                                  error=clip((group.pick_error or "").strip(), 4000))
    if finished < len(variants):
        return WORKING
    if any(run.state == RunState.SUCCEEDED.value and run.commit_sha for run in variants):
        return PICK_NOW
    return NONE_SUCCEEDED


async def write(db: AsyncEngine, gh: Any, group: Any, body: str) -> dict[str, Any]:
    """Create the group's comment once (even across crashes), or edit it."""
    owner, _, repo = group.repo_full_name.partition("/")
    key = group_marker(group.id)
    url_vars = {"owner": owner, "repo": repo, "issue_number": group.number}
    created = False

    async def create() -> dict[str, Any]:
        nonlocal created
        made = await gh.post("/repos/{owner}/{repo}/issues/{issue_number}/comments",
                             url_vars, data={"body": body})
        created = True
        return {"id": made["id"], "html_url": made.get("html_url")}

    async def find() -> dict[str, Any] | None:
        return await effects.find_marked_comment(gh, url_vars, key)

    comment = await effects.once(db, key, create, find)
    if not created:
        await gh.patch("/repos/{owner}/{repo}/issues/comments/{comment_id}",
                       {"owner": owner, "repo": repo, "comment_id": comment["id"]},
                       data={"body": body})
    return comment

