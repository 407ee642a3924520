"""What the check run and the status comment say about a run: pure text, within GitHub's limits."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from bot.config.budget import Budget, format_dollars
from bot.github import effects
from bot.markdown import clip, code_span
from bot.redact import redact
from bot.store.tables import ACTIVE_STATES, RunState, aware

CHECK_NAME = "agentbot"
VARIANT_CHECK_NAME = "agentbot: variant {variant} of {size}"
OUTPUT_MAX = 65_535  # check run output.summary and output.text
TITLE_MAX = 250
PLAN_MAX_ITEMS = 30
LINE_MAX = 300

CANCEL_ACTION = {"label": "Cancel", "description": "Stop this run", "identifier": "cancel"}
RETRY_ACTION = {"label": "Retry", "description": "Run again with the same inputs",
                "identifier": "retry"}
APPROVE_ACTION = {"label": "Approve", "description": "Start it, as the request is now",
                  "identifier": "approve"}
DENY_ACTION = {"label": "Deny", "description": "Refuse this request", "identifier": "deny"}
RETRYABLE = (RunState.FAILED, RunState.TIMED_OUT, RunState.CANCELLED, RunState.BUDGET_EXCEEDED)

TITLES = {
    RunState.QUEUED: "Queued",
    RunState.STARTING: "Starting the sandbox",
    RunState.RUNNING: "Running",
    RunState.FAILED: "Failed",
    RunState.CANCELLED: "Cancelled",
    RunState.TIMED_OUT: "Timed out",
    RunState.BUDGET_EXCEEDED: "Budget reached",
    RunState.AWAITING_APPROVAL: "Waiting for a maintainer's approval",
    RunState.DENIED: "Denied",
    RunState.EXPIRED: "Expired without an approval",
}
TITLE_PARTIAL_PR = "Budget reached: partial draft pull request #{number}"
TITLE_PR_OPENED = "Opened pull request #{number}"
TITLE_PUSHED = "Pushed a commit to {branch}"
TITLE_NO_CHANGES = "No changes"

HEADLINE = "**agentbot run #{id}** · `{agent}`{model} · {trigger} by @{login} · {elapsed}"
COMMENT_HEAD = "### {icon} agentbot run #{id}: {title}\n\n"
ICONS = {
    RunState.QUEUED: "⏳", RunState.STARTING: "⏳", RunState.RUNNING: "🔄",
    RunState.SUCCEEDED: "✅", RunState.FAILED: "❌", RunState.CANCELLED: "⏹️",
    RunState.TIMED_OUT: "⌛", RunState.BUDGET_EXCEEDED: "💰",
    RunState.AWAITING_APPROVAL: "✋", RunState.DENIED: "🚫", RunState.EXPIRED: "🚫",
}
WAITING = "Waiting for a sandbox."
AWAITING = ("This run waits for a maintainer's approval, because {why}. After reading the "
            "issue or pull request and the request, comment `/agent approve` (or press "
            "**Approve** on the check run) to start it, or `/agent deny` to refuse it.")
AWAITING_SENDER = "@{login} who asked for it has no write access to the repository"
AWAITING_AUTHOR = "@{login} who wrote it has no write access to the repository"
DENIED = "The run was not started: {reason}."
EXPIRED = "The run was not started: {reason}."
IN_PROGRESS = "in progress"
WORKING = ("agentbot is on it. Its live progress is in the [check run]({check_url}); this "
           "comment tells the outcome when the run ends.")
WORKING_NO_CHECK = "agentbot is on it; this comment tells the outcome when the run ends."
PR_OPENED = "Opened {draft}pull request #{number}: {url}"
PUSHED = "Pushed {sha} to `{branch}`."
VARIANT_PICK = ("To keep this variant, comment `/agent pick {variant}`: agentbot opens its pull "
                "request and deletes the other variants' branches.")
NO_CHANGES = "The agent finished without changing any file."
FAILED = "The run failed: {reason}"
CANCELLED = "The run was cancelled."
TIMED_OUT = "The run was stopped after its time limit ({limit})."
BUDGET_REACHED = "The run reached its model budget of {limit}, and agentbot stopped the agent."
PARTIAL_PR = ("The work done so far is in the partial draft pull request #{number}: {url} "
              "(review it as unfinished work).")
PARTIAL_PUSHED = "The work done so far is on the branch `{branch}` ({sha})."
PARTIAL_NONE = "The agent had changed no file by then, so there is nothing to publish."
PARTIAL_REFUSED = "Its work so far was not published: {reason}"
BUDGET_HINT = ("Comment `/agent run --budget <more> <instructions>` to go on with a larger "
               "budget (the operator's `AGENTBOT_MAX_RUN_BUDGET` caps it).")
RETRY_HINT = "Comment `/agent retry` to run it again."
DETAILS = "[Check run]({check_url})"
RUN_PAGE = "[Run page]({run_url})"  # bot/web's page of the run, when sign-in is on
AGENT_SUMMARY = "\n\n<details><summary>The agent's summary</summary>\n\n{summary}\n\n</details>"

PLAN_LINES = {"completed": "- [x] {text}\n", "cancelled": "- [x] ~~{text}~~\n",
              "in_progress": "- [ ] **{text}**\n", "pending": "- [ ] {text}\n"}


REFUSED_MAX = 20
REFUSED_HEAD = "\n\n#### Hosts the sandbox was refused\n"
REFUSED_HINT = ("\nTo allow one for this repository's runs, list it under `network.allow` in "
                "`.github/agentbot.yml` (the operator decides which hosts a repository may add "
                "with `AGENTBOT_EGRESS_REPO_ALLOW`), or ask the operator to add it to "
                "`AGENTBOT_EGRESS_ALLOW`.\n")
USAGE_LINE = ("**Model usage:** {input} input, {output} output, {cache_read} cache read and "
              "{cache_write} cache write tokens{models}{cost}")
COST = ", about {dollars}"
COST_PARTLY = ", about {dollars} (some models have no price in the operator's table)"
COST_UNKNOWN = "; no price for these models in the operator's table"
BUDGET_LINE = "\n**Budget:** {budget}"
# A follow-up's agent session: the earlier run's, continued, or a fresh one and why.
SESSION_LINE = "**Session:** {line}."
SESSION_RESUMES = "resumes the agent session of run #{run_id}"
SESSION_RESUMED = "resumed the agent session of run #{run_id}"
SESSION_FRESH = "started fresh, not resuming: {why}"


@dataclass(frozen=True)
class Usage:
    """The model tokens a run spent through the gateway, over all its requests."""

    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0
    models: tuple[str, ...] = ()
    cost: float = 0.0  # dollars of the priced responses
    unpriced: bool = False  # some responses had no price


@dataclass(frozen=True)
class Progress:
    """What the sandbox's events and the gateway's records tell about a running agent."""

    seq: int = -1  # the newest event's seq; -1 without events
    phase: str | None = None
    plan: list[dict[str, Any]] = field(default_factory=list)
    plan_more: int = 0
    step: str | None = None  # the latest tool call or message
    usage: Usage | None = None  # None before the first model response
    refused: list[tuple[str, int]] = field(default_factory=list)  # (host:port, attempts)


def conclusion(run: Any) -> str | None:
    """The check run's conclusion for a final run; None while it is active."""
    state = RunState(run.state)
    if state is RunState.SUCCEEDED:
        return "neutral" if (run.result or {}).get("status") == "no_changes" else "success"
    # A spent budget is no failure of the run's, but its work is unfinished: neutral.
    return {RunState.FAILED: "failure", RunState.CANCELLED: "cancelled",
            RunState.TIMED_OUT: "timed_out", RunState.BUDGET_EXCEEDED: "neutral",
            RunState.DENIED: "skipped", RunState.EXPIRED: "skipped"}.get(state)


def check_run_body(run: Any, progress: Progress, now: dt.datetime,
                   run_url: str | None = None) -> dict[str, Any]:
    """The check run's fields (create or update) for the run as it is now; its "Details"
    link is the run's page when there is one."""
    state = RunState(run.state)
    body: dict[str, Any] = {"name": check_name(run), "external_id": str(run.id)}
    if run_url:
        body["details_url"] = run_url
    if state in (RunState.AWAITING_APPROVAL, RunState.QUEUED, RunState.STARTING):
        body["status"] = "queued"
    elif state is RunState.RUNNING:
        body["status"] = "in_progress"
    else:
        body["status"] = "completed"
        body["conclusion"] = conclusion(run)
        body["completed_at"] = _iso(run.finished_at or now)
    if run.started_at is not None and state is not RunState.QUEUED:
        body["started_at"] = _iso(run.started_at)
    summary = (_headline(run, now) + _session_text(run) + "\n\n" + _outcome(run, None)
               + _plan_text(progress)
               + _usage_text(progress.usage, run) + _refused_text(progress.refused))
    body["output"] = {"title": clip(title(run, progress), TITLE_MAX),
                      "summary": clip(redact(summary), OUTPUT_MAX)}
    if state is RunState.AWAITING_APPROVAL:
        body["actions"] = [APPROVE_ACTION, DENY_ACTION]
    elif state in ACTIVE_STATES:
        body["actions"] = [CANCEL_ACTION]
    elif state in RETRYABLE:
        body["actions"] = [RETRY_ACTION]
    else:
        body["actions"] = []
    return body


def check_name(run: Any) -> str:
    """`agentbot`, or `agentbot: variant K of N` for a variant of a group."""
    variant = getattr(run, "variant", None)
    if variant is None:
        return CHECK_NAME
    size = len((run.config or {}).get("variants") or []) or variant
    return VARIANT_CHECK_NAME.format(variant=variant, size=size)


def title(run: Any, progress: Progress | None = None) -> str:
    state = RunState(run.state)
    if state is RunState.SUCCEEDED:
        if (run.result or {}).get("status") == "no_changes":
            return TITLE_NO_CHANGES
        if run.pr_number and not run.is_pull_request:
            return TITLE_PR_OPENED.format(number=run.pr_number)
        return TITLE_PUSHED.format(branch=run.branch or run.head_ref or "its branch")
    if state is RunState.BUDGET_EXCEEDED and run.pr_number:  # on a PR too: a PR into its branch
        return TITLE_PARTIAL_PR.format(number=run.pr_number)
    text = TITLES[state]
    if state is RunState.RUNNING and progress is not None and progress.phase:
        text += f": {progress.phase}"
    return text


def comment_body(run: Any, check_url: str | None, now: dt.datetime,
                 usage: Usage | None = None, run_url: str | None = None) -> str:
    """The sticky status comment, with its marker so a lost one can be found again.

    It is written twice: when the run is queued, pointing at the check run for the live
    progress, and when the run ends, with the outcome. Edits in between would only repeat
    the check run and cost GitHub's content-creating budget.
    """
    state = RunState(run.state)
    if state is RunState.AWAITING_APPROVAL:
        text = COMMENT_HEAD.format(icon=ICONS[state], id=run.id, title=title(run))
        text += _headline(run, None) + "\n\n" + _outcome(run, check_url)
    elif state in ACTIVE_STATES:
        text = COMMENT_HEAD.format(icon=ICONS[RunState.QUEUED], id=run.id, title=IN_PROGRESS)
        text += _headline(run, None) + "\n\n"
        text += WORKING.format(check_url=check_url) if check_url else WORKING_NO_CHECK
    else:
        text = COMMENT_HEAD.format(icon=ICONS[state], id=run.id, title=title(run))
        text += (_headline(run, now) + "\n\n" + _outcome(run, check_url)
                 + _usage_text(usage, run))
    links = ([DETAILS.format(check_url=check_url)] if check_url else []) + (
        [RUN_PAGE.format(run_url=run_url)] if run_url else [])
    if links:
        text += "\n\n" + " · ".join(links)
    return effects.tagged(redact(text), f"status_comment:{run.id}")


def _outcome(run: Any, check_url: str | None) -> str:
    state = RunState(run.state)
    result = run.result or {}
    summary = (result.get("summary") or "").strip()
    if state is RunState.AWAITING_APPROVAL:
        return AWAITING.format(why=_why_approval(run))
    if state in (RunState.DENIED, RunState.EXPIRED):
        template = DENIED if state is RunState.DENIED else EXPIRED
        return template.format(reason=(run.error or "no approval").strip())
    if state in (RunState.QUEUED, RunState.STARTING):
        return WAITING
    if state is RunState.RUNNING:
        return "The agent is working."
    if state is RunState.SUCCEEDED:
        if result.get("status") == "no_changes":
            text = NO_CHANGES
        elif run.pr_number and not run.is_pull_request:
            draft = "draft " if (run.config or {}).get("draft", True) else ""
            text = PR_OPENED.format(draft=draft, number=run.pr_number, url=run.pr_url or "")
        else:
            text = PUSHED.format(sha=(run.commit_sha or "")[:12],
                                 branch=run.branch or run.head_ref or "")
            if getattr(run, "variant", None) is not None:
                text += " " + VARIANT_PICK.format(variant=run.variant)
        return text + (AGENT_SUMMARY.format(summary=clip(summary, 20_000)) if summary else "")
    if state is RunState.BUDGET_EXCEEDED:
        return _budget_outcome(run)
    if state is RunState.CANCELLED:
        return CANCELLED + " " + RETRY_HINT
    if state is RunState.TIMED_OUT:
        return TIMED_OUT.format(limit=duration(int(run.timeout_seconds))) + " " + RETRY_HINT
    reason = (run.error or "unknown error").strip()
    return FAILED.format(reason=clip(reason, 20_000)) + "\n\n" + RETRY_HINT


def _why_approval(run: Any) -> str:
    provenance = getattr(run, "provenance", None) or {}
    if not provenance.get("sender_writes", True):
        return AWAITING_SENDER.format(login=provenance.get("requester") or run.sender_login)
    return AWAITING_AUTHOR.format(login=provenance.get("author") or "someone")


def _budget_outcome(run: Any) -> str:
    text = BUDGET_REACHED.format(limit=run.budget_reached or "its limit")
    if run.pr_number:
        text += "\n\n" + PARTIAL_PR.format(number=run.pr_number, url=run.pr_url or "")
    elif run.commit_sha:
        text += "\n\n" + PARTIAL_PUSHED.format(branch=run.branch or "", sha=run.commit_sha[:12])
    elif run.error:
        text += "\n\n" + PARTIAL_REFUSED.format(reason=clip(run.error.strip(), 20_000))
    else:
        text += "\n\n" + PARTIAL_NONE
    return text + "\n\n" + BUDGET_HINT


def _headline(run: Any, now: dt.datetime | None) -> str:
    model = f" ({run.model})" if run.model else ""
    if now is None:  # a text that is not kept up to date says no time
        elapsed = "queued " + _iso(run.created_at).replace("T", " ").replace("Z", " UTC")
    elif run.started_at is None:
        elapsed = "not started"
    elif run.finished_at is not None:
        seconds = (aware(run.finished_at) - aware(run.started_at)).total_seconds()
        elapsed = "ran " + duration(seconds)
    else:
        elapsed = "running for " + duration((now - aware(run.started_at)).total_seconds())
    return HEADLINE.format(id=run.id, agent=run.agent, model=model, trigger=run.trigger,
                           login=run.sender_login, elapsed=elapsed)


def session_line(run: Any) -> str | None:
    """What a follow-up did with its agent session, as a predicate ("resumed the agent
    session of run #3"), or None for a run with nothing to resume."""
    choice = (run.config or {}).get("session")
    if not choice:
        return None
    stats = (run.result or {}).get("stats") or {}
    earlier = choice.get("resume_from")
    if not earlier:
        return SESSION_FRESH.format(why=choice.get("fresh") or "none was kept")
    if run.result is None:
        return SESSION_RESUMES.format(run_id=earlier)
    if stats.get("session_resumed"):
        return SESSION_RESUMED.format(run_id=earlier)
    return SESSION_FRESH.format(why=str(stats.get("session_note") or "the agent kept none"))


def _session_text(run: Any) -> str:
    line = session_line(run)
    return "\n\n" + SESSION_LINE.format(line=line) if line else ""


def _plan_text(progress: Progress) -> str:
    text = ""
    if progress.plan:
        text += "\n\n#### Plan\n"
        for item in progress.plan[:PLAN_MAX_ITEMS]:
            line = PLAN_LINES.get(str(item.get("status")), PLAN_LINES["pending"])
            text += line.format(text=_one_line(str(item.get("text") or "")))
        more = len(progress.plan) - PLAN_MAX_ITEMS + progress.plan_more
        if more > 0:
            text += f"- … and {more} more\n"
    if progress.step:
        text += f"\n**Now:** {_one_line(progress.step)}\n"
    return text


def _usage_text(usage: Usage | None, run: Any = None) -> str:
    budget = Budget.from_json(((run.config or {}) if run is not None else {}).get("budget"))
    budget_line = BUDGET_LINE.format(budget=budget.describe()) if budget else ""
    if usage is None:
        return "\n\n" + budget_line.lstrip("\n") if budget_line else ""
    models = f" ({', '.join(code_span(m, 100) for m in usage.models)})" if usage.models else ""
    if usage.cost and usage.unpriced:
        cost = COST_PARTLY.format(dollars=format_dollars(usage.cost))
    elif usage.unpriced:
        cost = COST_UNKNOWN
    else:
        cost = COST.format(dollars=format_dollars(usage.cost))
    return "\n\n" + USAGE_LINE.format(input=f"{usage.input:,}", output=f"{usage.output:,}",
                                      cache_read=f"{usage.cache_read:,}",
                                      cache_write=f"{usage.cache_write:,}", models=models,
                                      cost=cost) + budget_line


def _refused_text(refused: list[tuple[str, int]]) -> str:
    """The hosts the egress proxy refused, so a maintainer can allow the ones they trust."""
    if not refused:
        return ""
    text = REFUSED_HEAD
    for target, attempts in refused[:REFUSED_MAX]:
        text += f"- {code_span(target, 300)}" + (f" ({attempts} times)" if attempts > 1
                                                 else "") + "\n"
    if len(refused) > REFUSED_MAX:
        text += f"- … and {len(refused) - REFUSED_MAX} more\n"
    return text + REFUSED_HINT


def duration(seconds: float) -> str:
    """`1h 2m`, `4m 12s`, `9s`."""
    total = max(int(seconds), 0)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= LINE_MAX else line[: LINE_MAX - 1] + "…"


def _iso(when: dt.datetime) -> str:
    return aware(when).astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
