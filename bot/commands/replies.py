"""User-facing reply texts and the one function that posts a reply exactly once."""

from __future__ import annotations

from typing import Any

from bot.commands.context import Context
from bot.github import effects

NOT_ALLOWED = (
    "@{login} only people with write access to this repository can ask agentbot to work. "
    "Ask a maintainer to run the command for you."
)
ALREADY_ACTIVE = (
    "@{login} run #{run_id} is already {state} for this {kind}{link}. "
    "Wait for it to finish, or cancel it with `/agent cancel`."
)
NOTHING_TO_CANCEL = "@{login} there is no active run on this {kind} to cancel."
NOTHING_TO_RETRY = "@{login} there is no earlier run on this {kind} to retry."
# Under the status table, one line a follow-up: what it did with its agent session.
STATUS_SESSION = "- Run #{id} {line}.\n"
FORK_REFUSED = (
    "@{login} this pull request comes from a fork (`{head_repo}`). agentbot cannot push to "
    "a fork, and it does not run on one unless `.github/agentbot.yml` on the default branch "
    "says `allow_forks: true` (it then opens a new pull request with the changes)."
)
CONFIG_INVALID = "@{login} agentbot did not start a run: {error}"
UNKNOWN_PROFILE = "@{login} agentbot did not start a run: {error}."
CREDENTIALS_MISSING = "@{login} agentbot did not start a run: {reason}."
COMMAND_AGENT_MISSING = (
    "@{login} the `command` agent is not set up here: the operator sets its argv in "
    "`AGENTBOT_AGENT_COMMAND`."
)
COMMAND_ERROR = "@{login} {message}\n\n{usage}"
DAILY_RUNS = (
    "@{login} agentbot did not start a run: you have started {count} runs today, the most "
    "one person may start in a day here (`AGENTBOT_USER_DAILY_RUNS`). The limit resets at "
    "{reset}."
)
DAILY_RUNS_GROUP = (
    "@{login} agentbot did not start the {adding} variants: you have started {count} runs "
    "today, and with them you would pass the {most} one person may start in a day here "
    "(`AGENTBOT_USER_DAILY_RUNS`; each variant is a run). Ask for fewer, or wait until the "
    "limit resets at {reset}."
)
DAILY_USER_BUDGET = (
    "@{login} agentbot did not start a run: the runs you started today have used {spent}, "
    "which reaches the daily limit of {limit} per person (`AGENTBOT_USER_DAILY_BUDGET`). "
    "The limit resets at {reset}."
)
DAILY_INSTALLATION_BUDGET = (
    "@{login} agentbot did not start a run: the runs of this installation today have used "
    "{spent}, which reaches its daily limit of {limit} (`AGENTBOT_INSTALLATION_DAILY_BUDGET`). "
    "The limit resets at {reset}."
)
PR_NEEDS_INSTRUCTIONS = (
    "@{login} on a pull request, tell agentbot what to change: `/agent <instructions>`."
)
AWAITING_APPROVAL = (
    "@{login} {why}, so agentbot waits for a maintainer (someone with write access) to "
    "approve run #{run_id} before it starts.\n\n"
    "{request}"
    "Maintainers: read the {kind}'s {parts} first, then comment "
    "`/agent approve` here (or press **Approve** on the run's check run) to start it, or "
    "`/agent deny` to refuse it. The approval covers them exactly as they are now "
    "(SHA-256 `{digest}`): if any of them changes before the run starts, agentbot asks again. "
    "Without an approval, the request expires in {ttl}."
)
WHY_SENDER = "you do not have write access to this repository"
WHY_AUTHOR = "this {kind} was written by @{author}, who does not have write access to this " \
             "repository"
REQUEST_QUOTED = "The request, as agentbot would pass it to the agent:\n\n{block}\n\n"
# What the approval covers, as the reply names it: (on a pull request?, with a request?).
APPROVAL_PARTS = {
    (False, False): "title and description",
    (False, True): "title, description and the request",
    (True, False): "title, description and head commit",
    (True, True): "title, description, head commit and the request",
}
APPROVAL_CHANGED = (
    "@{login} agentbot did not start run #{run_id}: since it was asked for, the {changed} "
    "changed on GitHub. Read the {kind} again, then comment `/agent approve` to run it as it "
    "is now (SHA-256 `{digest}`), or `/agent deny`."
)
NOTHING_TO_APPROVE = "@{login} there is no run waiting for approval on this {kind}."
EXPIRED_REASON = "nobody approved it within {ttl}"
DENIED_REASON = "denied by @{login}"
STATUS_HEADER = "Runs of this {kind}:\n\n"
STATUS_HEADER += "| run | state | agent | trigger | by | started | result |\n"
STATUS_HEADER += "|---|---|---|---|---|---|---|\n"
STATUS_ROW = "| #{id} | {state} | {agent} | {trigger} | @{login} | {created} | {result} |\n"
STATUS_EMPTY = "There are no agentbot runs on this {kind} yet."
STATUS_VARIANT = " (variant {variant} of {size}, group {group_id})"
STATUS_GROUP = "- Group {group_id}: {size} variants asked for by @{login}; {states}. {pick}\n"
STATUS_PICKED = "@{login} picked variant {variant}{pull}."
STATUS_PICKING = "@{login} picked variant {variant}; its pull request is being opened."
STATUS_GROUP_RUNNING = "Some are still running."
STATUS_PICK_HINT = "Keep one with `/agent pick K`."
STATUS_NONE_SUCCEEDED = "None succeeded; `/agent retry` runs the group again."
TOO_MANY_VARIANTS = (
    "@{login} agentbot did not start a run: {count} variants is more than the {most} one "
    "request may ask for here (`AGENTBOT_MAX_VARIANTS`)."
)
FEWER_VARIANTS = (
    "@{login} agentbot did not start a run: `{option}` names {given} values, but there are "
    "only {count} variants to spread them over; ask for `--variants {given}` or more."
)
VARIANTS_NEED_APPROVAL = (
    "@{login} agentbot did not start a run: variants start only for someone with write "
    "access, on an issue or pull request written by someone with write access. Ask for "
    "a single run (without `--variants`, several agents or models, or a profile with "
    "`variants`), which a maintainer can approve."
)
GROUP_ACTIVE = (
    "@{login} the {size} variants of group {group_id} are still running on this {kind}. "
    "Wait for them to finish, or cancel them with `/agent cancel`."
)
NOTHING_TO_PICK = "@{login} there are no variants on this {kind} to pick from."
ALREADY_PICKED = "@{login} @{by} picked variant {variant} of group {group_id} already."
PICK_WHILE_RUNNING = (
    "@{login} variants {variants} are still running. Pick when they have finished, or "
    "cancel them with `/agent cancel`."
)
NONE_SUCCEEDED = (
    "@{login} no variant of group {group_id} succeeded with changes, so there is nothing to "
    "pick. Comment `/agent retry` to run the group again."
)
PICK_WHICH = (
    "@{login} variants {variants} succeeded: say which one to keep, like `/agent pick {first}`."
)
CANNOT_PICK = "@{login} variant {variant} cannot be picked: {why}. Variants to pick: {variants}."
NO_SUCH_VARIANT = "the group has {size} variants"
NOT_PICKABLE = "it ended {state} without a commit to keep"


def kind_of(is_pull_request: bool) -> str:
    return "pull request" if is_pull_request else "issue"


async def reply_once(ctx: Context, gh: Any, *, key: str, repo_full_name: str, number: int,
                     body: str) -> dict[str, Any]:
    """Post a comment on the issue or PR at most once for `key`, even across crashes."""
    owner, _, repo = repo_full_name.partition("/")
    text = effects.tagged(body, key)
    url_vars = {"owner": owner, "repo": repo, "issue_number": number}

    async def create() -> dict[str, Any]:
        comment = await gh.post("/repos/{owner}/{repo}/issues/{issue_number}/comments",
                                url_vars, data={"body": text})
        return {"id": comment["id"], "html_url": comment.get("html_url")}

    async def find() -> dict[str, Any] | None:
        return await effects.find_marked_comment(gh, url_vars, key)

    return await effects.once(ctx.db, key, create, find)

