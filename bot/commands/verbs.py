"""What each `/agent` verb does once a trusted sender asked for it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from bot.commands import approvals, replies
from bot.commands.context import Context
from bot.commands.grammar import Command, help_text
from bot.commands.sources import Source, is_bot, reply, run_link, writes
from bot.config.budget import Budget, Spend
from bot.config.providers import missing_credentials
from bot.config.repo import ConfigError, Effective, UnknownProfile, effective, with_profile
from bot.config.settings import format_duration
from bot.report.text import session_line
from bot.runs import groups, ledger
from bot.runs.prompt import inputs_digest, inputs_of
from bot.runs.sessions import choose as choose_session
from bot.store import usage as usage_store
from bot.store.tables import ACTIVE_STATES, RunState

log = logging.getLogger(__name__)

Verb = Callable[[Context, Any, Source, Command], Awaitable[None]]


async def repo_config(ctx: Context, source: Source) -> Effective | ConfigError:
    """The repository's .github/agentbot.yml from its default branch, capped by the operator."""
    try:
        config = await ctx.configs.load(source.installation_id, source.repo_full_name,
                                        source.repo.get("default_branch") or "main")
        return effective(config, ctx.settings)
    except ConfigError as exc:
        return exc


async def credentials_ready(ctx: Context, gh: Any, source: Source, agent: str,
                            model: str | None) -> bool:
    """Whether the gateway can reach the agent's model; if not, say which variable the
    operator must set, now rather than when the agent fails in its sandbox minutes later."""
    missing = missing_credentials(ctx.settings, agent, model)
    if missing is not None:
        await reply(ctx, gh, source, replies.CREDENTIALS_MISSING.format(
            login=source.login, reason=missing))
    return missing is None


async def author_writes(ctx: Context, gh: Any, source: Source, config: Effective) -> bool:
    """Whether the issue's or PR's author may write to the repository (a bot the repo config
    allows counts as one)."""
    author = source.author or {}
    login = str(author.get("login") or "")
    if is_bot(author):
        return config.allows_bot(login)
    return await writes(ctx, gh, source, login)


async def profiled(ctx: Context, gh: Any, source: Source, config: Effective,
                   name: str | None) -> Effective | None:
    """The config with the profile `name` applied (as is without one), or None after replying
    that the repository has no such profile."""
    if name is None:
        return config
    try:
        return with_profile(config, name, ctx.settings)
    except (UnknownProfile, ConfigError) as exc:
        template = replies.CONFIG_INVALID if isinstance(exc, ConfigError) \
            else replies.UNKNOWN_PROFILE
        await reply(ctx, gh, source, template.format(login=source.login, error=exc))
        return None


async def new_run_for(ctx: Context, gh: Any, source: Source, *, trigger: str,
                      command: Command | None, config: Effective | None = None,
                      sender_writes: bool = True) -> ledger.NewRun | None:
    """The run a trigger asks for, or None after replying why there is none. The command's
    `--profile` changes the config first (a label's profile comes applied with `config`)."""
    settings = ctx.settings
    if config is None:
        loaded = await repo_config(ctx, source)
        if isinstance(loaded, ConfigError):
            await reply(ctx, gh, source, replies.CONFIG_INVALID.format(
                login=source.login, error=loaded))
            return None
        config = loaded
    if config.profile is None:
        chosen = await profiled(ctx, gh, source, config, command.profile if command else None)
        if chosen is None:
            return None
        config = chosen
    agent = (command.agent if command else None) or config.agent
    model = (command.model if command else None) or config.model
    timeout = config.timeout_seconds
    if command and command.timeout:
        timeout = min(command.timeout, settings.run_timeout)  # the operator's cap wins
    instructions = command.text.strip() if command else ""
    if agent == "command" and not settings.agent_command:
        await reply(ctx, gh, source, replies.COMMAND_AGENT_MISSING.format(login=source.login))
        return None
    spread = await _spread(ctx, gh, source, command, config)
    if spread is None:
        return None
    if not await credentials_ready(ctx, gh, source, agent, model):
        return None
    if command and command.budget:
        budget, budget_from = command.budget.capped(settings.run_budget_cap), "command"
    else:
        budget, budget_from = config.budget, "config"
    if await refused_by_daily_limits(ctx, gh, source, adding=len(spread)):
        return None
    base_ref = source.repo.get("default_branch") or "main"
    head_ref = base_sha = None
    context = dict(source.context)
    if source.is_pull_request:
        if not instructions:
            await reply(ctx, gh, source,
                        replies.PR_NEEDS_INSTRUCTIONS.format(login=source.login))
            return None
        pull = source.pull or await gh.getitem(
            "/repos/{owner}/{repo}/pulls/{pull_number}",
            {**source.owner_repo(), "pull_number": source.number})
        head_repo = (pull.get("head") or {}).get("repo") or {}
        base_sha = pull["head"]["sha"]
        if head_repo.get("id") == source.repo["id"]:
            # Iterating on a PR: the work starts from, and is published to, its head branch.
            head_ref = base_ref = pull["head"]["ref"]
        elif config.allow_forks and head_repo:
            # agentbot cannot push to a fork: it starts from the fork's head (GitHub serves
            # it from this repository too) and opens a new PR into the same base branch.
            base_ref = pull["base"]["ref"]
            context["fork"] = {"repo": head_repo.get("full_name"), "ref": pull["head"]["ref"]}
        else:
            await reply(ctx, gh, source, replies.FORK_REFUSED.format(
                login=source.login, head_repo=head_repo.get("full_name", "a deleted fork")))
            return None
    provenance = {"author": (source.author or {}).get("login"),
                  "author_writes": await author_writes(ctx, gh, source, config),
                  "requester": source.login, "sender_writes": sender_writes}
    return ledger.NewRun(
        installation_id=source.installation_id,
        repo_id=source.repo["id"],
        repo_full_name=source.repo_full_name,
        clone_url=source.repo["clone_url"],
        number=source.number,
        is_pull_request=source.is_pull_request,
        base_ref=base_ref,
        base_sha=base_sha,
        head_ref=head_ref,
        trigger=trigger,
        sender_login=source.login,
        sender_id=source.sender["id"],
        delivery_id=source.event.delivery_id,
        comment_id=source.comment_id,
        title=source.title,
        body=source.body,
        instructions=instructions,
        context=context,
        agent=agent,
        model=model,
        timeout_seconds=timeout,
        config=with_spread(config_snapshot(config, budget, budget_from), spread),
        provenance=provenance,
        inputs_sha256=inputs_digest(inputs_of(source.title, source.body, instructions, context,
                                              base_sha)),
    )


async def _spread(ctx: Context, gh: Any, source: Source, command: Command | None,
                  config: Effective) -> list[tuple[str, str | None]] | None:
    """The agent and model of each variant the trigger asks for (one entry without
    variants), or None after replying what is wrong with the request."""
    settings = ctx.settings
    agents = (command.agents if command else ()) or (
        (command.agent if command else None) or config.agent,)
    given_models = (command.models or ((command.model,) if command.model else ())
                    ) if command else ()
    count = (command.variants if command else None) or max(
        config.variants, len(agents), len(given_models))
    if count > settings.max_variants:
        await reply(ctx, gh, source, replies.TOO_MANY_VARIANTS.format(
            login=source.login, count=count, most=settings.max_variants))
        return None
    for option, values in (("--agent", agents), ("--model", given_models)):
        if len(values) > count:
            await reply(ctx, gh, source, replies.FEWER_VARIANTS.format(
                login=source.login, count=count, option=option, given=len(values)))
            return None
    spread: list[tuple[str, str | None]] = []
    for k in range(count):
        agent = agents[k % len(agents)]
        if given_models:
            model: str | None = given_models[k % len(given_models)]
        else:
            # The config's model is for the config's agent: another agent does not inherit it.
            model = config.model if agent == config.agent else None
        spread.append((agent, model))
    if count > 1:
        for agent, model in dict.fromkeys(spread):
            if agent == "command" and not settings.agent_command:
                await reply(ctx, gh, source,
                            replies.COMMAND_AGENT_MISSING.format(login=source.login))
                return None
            if not await credentials_ready(ctx, gh, source, agent, model):
                return None
    return spread


def with_spread(snapshot: dict[str, Any], spread: list[tuple[str, str | None]]
                ) -> dict[str, Any]:
    """The config snapshot with the variants' agents and models, when there are several."""
    if len(spread) > 1:
        return {**snapshot, "variants": [list(pair) for pair in spread]}
    return snapshot


def spread_of(new: ledger.NewRun) -> list[tuple[str, str | None]]:
    """The variants a new run stands for; empty for a single run."""
    return [(str(a), m) for a, m in (new.config or {}).get("variants") or []]


async def refuse_variants_for_approval(ctx: Context, gh: Any, source: Source,
                                       new: ledger.NewRun) -> bool:
    """Variants start only for a writer, on inputs writers wrote: a request that needs an
    approval is refused (after a reply) rather than approved N times over."""
    if not spread_of(new):
        return False
    await reply(ctx, gh, source, replies.VARIANTS_NEED_APPROVAL.format(login=source.login))
    return True


def config_snapshot(config: Effective, budget: Budget | None = None,
                    budget_from: str = "config") -> dict[str, Any]:
    """What a run keeps of its repo config (JSON): setup, instructions, draft, policy, the
    hosts it may reach and its model budget (the command's, else the config's)."""
    budget = config.budget if budget is None else budget
    return {
        "setup": list(config.setup), "instructions": config.instructions,
        "draft": config.draft, "max_changed_files": config.max_changed_files,
        "protected_paths": list(config.protected_paths), "allow_forks": config.allow_forks,
        "network": {"allow": list(config.network_allow)},
        "budget": budget.to_json(), "budget_from": budget_from,
        "profile": config.profile, "system_prompt": config.system_prompt,
    }


def day_bounds(now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """The start of the UTC day of `now`, and the start of the next (when limits reset)."""
    start = now.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return start, start + dt.timedelta(days=1)


def _reset_text(now: dt.datetime, reset: dt.datetime) -> str:
    left = int((reset - now).total_seconds())
    return f"{reset:%Y-%m-%d %H:%M} UTC (in {format_duration(max(left, 60) // 60 * 60)})"


async def refused_by_daily_limits(ctx: Context, gh: Any, source: Source,
                                  adding: int = 1) -> bool:
    """Whether a daily limit refuses this trigger (of `adding` runs), after replying which
    one and when it resets."""
    settings = ctx.settings
    limits = (settings.user_daily_runs, settings.user_budget, settings.installation_budget)
    if not any(limits):
        return False
    now = ctx.clock()
    since, reset = day_bounds(now)
    when = _reset_text(now, reset)
    sender_id = int(source.sender["id"])
    message = limit = None
    if settings.user_daily_runs:
        count = await usage_store.runs_started(ctx.db, sender_id, since)
        if count + adding > settings.user_daily_runs:
            limit = "user_daily_runs"
            message = replies.DAILY_RUNS.format(login=source.login, count=count, reset=when) \
                if count >= settings.user_daily_runs else replies.DAILY_RUNS_GROUP.format(
                    login=source.login, count=count, adding=adding,
                    most=settings.user_daily_runs, reset=when)
    if message is None and settings.user_budget:
        spent = Spend(*await usage_store.total(ctx.db, sender_id=sender_id, since=since))
        if reached := settings.user_budget.reached(spent):
            limit = "user_daily_budget"
            message = replies.DAILY_USER_BUDGET.format(login=source.login, spent=spent.describe(),
                                                       limit=reached, reset=when)
    if message is None and settings.installation_budget:
        spent = Spend(*await usage_store.total(ctx.db, installation_id=source.installation_id,
                                               since=since))
        if reached := settings.installation_budget.reached(spent):
            limit = "installation_daily_budget"
            message = replies.DAILY_INSTALLATION_BUDGET.format(
                login=source.login, spent=spent.describe(), limit=reached, reset=when)
    if message is None or limit is None:
        return False
    log.info("trigger refused by a daily limit", extra={
        "limit": limit, "login": source.login, "repo": source.repo_full_name})
    ctx.on_limit(limit)
    await reply(ctx, gh, source, message)
    return True


async def with_session(ctx: Context, new: ledger.NewRun, fresh: bool) -> ledger.NewRun:
    """The run with its session choice in its config: the earlier run of this pull request
    or issue whose agent session it continues, or why it starts fresh (`--fresh`, say)."""
    choice = await choose_session(
        ctx.db, repo_id=new.repo_id, number=new.number, is_pull_request=new.is_pull_request,
        agent=new.agent, fresh=fresh, max_bytes=ctx.settings.session_max_bytes)
    if choice is None:
        return new
    return dataclasses.replace(new, config={**(new.config or {}), "session": choice})


def session_notes(found: list[Any]) -> str:
    """Lines under the status table on what each follow-up did with its agent session."""
    lines = [replies.STATUS_SESSION.format(id=run.id, line=line)
             for run in found if (line := session_line(run))]
    return "\n" + "".join(lines) if lines else ""


async def start_run(ctx: Context, gh: Any, source: Source, *, trigger: str,
                    command: Command | None, config: Effective | None = None) -> None:
    """Write a queued run for the source, or reply why not."""
    new = await new_run_for(ctx, gh, source, trigger=trigger, command=command, config=config)
    if new is not None:
        await _create(ctx, gh, source, new, fresh=bool(command and command.fresh))


async def _create_group(ctx: Context, gh: Any, source: Source, new: ledger.NewRun,
                        spread: list[tuple[str, str | None]],
                        retry_of: int | None = None) -> None:
    outcome = await groups.create_group(ctx.db, new, spread, retry_of=retry_of)
    if isinstance(outcome, ledger.AlreadyActive):
        await _already_active(ctx, gh, source, outcome.run)
    elif isinstance(outcome, groups.GroupCreated):
        ctx.on_run_change()


async def _create(ctx: Context, gh: Any, source: Source, new: ledger.NewRun,
                  fresh: bool = False) -> None:
    spread = spread_of(new)
    if spread:
        await _create_group(ctx, gh, source, new, spread)
        return
    new = await with_session(ctx, new, fresh)
    outcome = await ledger.create_run(ctx.db, new)
    if isinstance(outcome, ledger.AlreadyActive):
        await _already_active(ctx, gh, source, outcome.run)
    elif isinstance(outcome, ledger.Created):
        ctx.on_run_change()


async def _already_active(ctx: Context, gh: Any, source: Source, active: Any) -> None:
    if active.group_id is not None:
        group = await groups.get_group(ctx.db, active.group_id)
        await reply(ctx, gh, source, replies.GROUP_ACTIVE.format(
            login=source.login, group_id=active.group_id, size=group.size if group else "?",
            kind=source.kind))
        return
    await reply(ctx, gh, source, replies.ALREADY_ACTIVE.format(
        login=source.login, run_id=active.id, state=RunState(active.state).value,
        kind=source.kind, link=run_link(source, active)))


async def run_verb(ctx: Context, gh: Any, source: Source, command: Command) -> None:
    trigger = "review_comment" if source.context else "comment"
    await start_run(ctx, gh, source, trigger=trigger, command=command)


async def cancel_verb(ctx: Context, gh: Any, source: Source, command: Command) -> None:
    active = await ledger.active_run(ctx.db, source.repo["id"], source.number)
    if active is None:
        await reply(ctx, gh, source, replies.NOTHING_TO_CANCEL.format(
            login=source.login, kind=source.kind))
        return
    targets = [active]
    if active.group_id is not None:
        # A group is cancelled whole (one variant's check run button cancels that one).
        targets = await groups.variants_of(ctx.db, active.group_id)
    for run in targets:
        await ledger.request_cancel(ctx.db, run.id, by=source.login)
    ctx.on_run_change()


async def retry_verb(ctx: Context, gh: Any, source: Source, command: Command) -> None:
    await retry(ctx, gh, source, trigger="retry")


async def retry(ctx: Context, gh: Any, source: Source, *, trigger: str,
                run: Any | None = None) -> None:
    """Queue the latest (or the given) run again with the same inputs."""
    if run is None:
        latest = await ledger.runs_of(ctx.db, source.repo["id"], source.number, limit=1)
        if not latest:
            await reply(ctx, gh, source, replies.NOTHING_TO_RETRY.format(
                login=source.login, kind=source.kind))
            return
        run = latest[0]
    # The same inputs, under the repository's config as it is now: a retry is how a
    # maintainer picks up a fixed `setup` or `protected_paths`.
    loaded = await repo_config(ctx, source)
    if isinstance(loaded, ConfigError):
        await reply(ctx, gh, source, replies.CONFIG_INVALID.format(
            login=source.login, error=loaded))
        return
    # The earlier run's profile, as the config has it now.
    config = await profiled(ctx, gh, source, loaded, (run.config or {}).get("profile"))
    if config is None:
        return
    fork = bool((run.context or {}).get("fork"))
    # A variant's retry is its group's: every variant again, with its agent and model.
    spread = [(str(v.agent), v.model) for v in await groups.variants_of(ctx.db, run.group_id)
              ] if run.group_id is not None else [(str(run.agent), run.model)]
    for agent, model in dict.fromkeys(spread):
        if not await credentials_ready(ctx, gh, source, agent, model):
            return
    if await refused_by_daily_limits(ctx, gh, source, adding=len(spread)):
        return
    # A budget the command gave stays the run's (capped as the operator's limit is now);
    # one that came from the config follows the config.
    earlier = run.config or {}
    budget = None
    # The inputs stay the earlier run's, and so does who wrote them; a writer's retry of an
    # outsider's request is that writer's approval of it.
    provenance = run.provenance or None
    outsider = provenance is not None and not provenance.get("sender_writes", True)
    if earlier.get("budget_from") == "command":
        budget = Budget.from_json(earlier.get("budget")).capped(ctx.settings.run_budget_cap)
    new = ledger.NewRun(
        installation_id=run.installation_id, repo_id=run.repo_id,
        repo_full_name=run.repo_full_name, clone_url=run.clone_url, number=run.number,
        is_pull_request=run.is_pull_request, base_ref=run.base_ref,
        # A PR's branch may have moved since: it is resolved again. A fork's head cannot
        # be (its branch is not here), so its retry starts where the run did.
        base_sha=run.base_sha if fork else None, head_ref=run.head_ref, trigger=trigger,
        sender_login=source.login, sender_id=source.sender["id"],
        delivery_id=source.event.delivery_id, comment_id=source.comment_id,
        retry_of=run.id, title=run.title, body=run.body, instructions=run.instructions,
        context=run.context, agent=run.agent, model=run.model,
        timeout_seconds=min(run.timeout_seconds, ctx.settings.run_timeout),
        config=with_spread(config_snapshot(config, budget, "command" if budget is not None
                                           else "config"), spread),
        provenance=provenance,
        inputs_sha256=inputs_digest(inputs_of(run.title, run.body, run.instructions,
                                              run.context, run.base_sha if fork else None)),
        approved_by=source.login if outsider else None,
    )
    if len(spread) > 1:
        await _create_group(ctx, gh, source, new, spread, retry_of=run.group_id)
        return
    await _create(ctx, gh, source, new)


async def status_verb(ctx: Context, gh: Any, source: Source, command: Command) -> None:
    await reply(ctx, gh, source, await status_text(ctx, source))


async def status_text(ctx: Context, source: Source) -> str:
    found = await ledger.runs_of(ctx.db, source.repo["id"], source.number)
    if not found:
        return replies.STATUS_EMPTY.format(kind=source.kind)
    rows = []
    sizes: dict[int, Any] = {}
    for run in found:
        if run.group_id is not None and run.group_id not in sizes:
            sizes[run.group_id] = await groups.get_group(ctx.db, run.group_id)
    for run in found:
        result = run.error or ""
        if run.pr_number:
            result = f"#{run.pr_number}"
        label = str(run.id)
        if run.group_id is not None and sizes.get(run.group_id) is not None:
            label += replies.STATUS_VARIANT.format(variant=run.variant, group_id=run.group_id,
                                                   size=sizes[run.group_id].size)
        rows.append(replies.STATUS_ROW.format(
            id=label, state=run.state, agent=run.agent, trigger=run.trigger,
            login=run.sender_login, created=run.created_at.strftime("%Y-%m-%d %H:%M UTC"),
            result=(result + run_link(source, run)).replace("|", "\\|").replace("\n", " ")
            [:200]))
    text = replies.STATUS_HEADER.format(kind=source.kind) + "".join(rows)
    summaries = [await _group_summary(ctx, group) for group in sizes.values() if group]
    if summaries:
        text += "\n" + "".join(summaries)
    return text + session_notes(found)


async def _group_summary(ctx: Context, group: Any) -> str:
    """One line for a group of variants: how they ended, and its pick."""
    variants = await groups.variants_of(ctx.db, group.id)
    counts: dict[str, int] = {}
    for run in variants:
        counts[run.state] = counts.get(run.state, 0) + 1
    states = ", ".join(f"{n} {state}" for state, n in counts.items())
    if group.pick_state == groups.PICK_DONE:
        picked = next((v for v in variants if v.variant == group.picked_variant), None)
        pull = f" (#{picked.pr_number})" if picked is not None and picked.pr_number else ""
        pick = replies.STATUS_PICKED.format(variant=group.picked_variant,
                                            login=group.picked_by, pull=pull)
    elif group.pick_state == groups.PICK_PENDING:
        pick = replies.STATUS_PICKING.format(variant=group.picked_variant,
                                             login=group.picked_by)
    elif any(run.state in ACTIVE_VALUES for run in variants):
        pick = replies.STATUS_GROUP_RUNNING
    elif any(groups.pickable(run) for run in variants):
        pick = replies.STATUS_PICK_HINT
    else:
        pick = replies.STATUS_NONE_SUCCEEDED
    return replies.STATUS_GROUP.format(group_id=group.id, size=group.size,
                                       login=group.sender_login, states=states, pick=pick)


async def pick_verb(ctx: Context, gh: Any, source: Source, command: Command) -> None:
    """`/agent pick [K]`: keep variant K of the newest group here (the scheduler's publisher
    opens its PR and deletes the other branches; the status comment records who picked)."""
    group = await groups.latest_group(ctx.db, source.repo["id"], source.number)
    if group is None:
        await reply(ctx, gh, source, replies.NOTHING_TO_PICK.format(
            login=source.login, kind=source.kind))
        return
    delivery = source.event.delivery_id
    if group.pick_delivery_id == delivery:
        ctx.on_run_change()  # this very request, again (a redelivery): it is recorded
        return
    if group.pick_state in (groups.PICK_PENDING, groups.PICK_DONE):
        await reply(ctx, gh, source, replies.ALREADY_PICKED.format(
            login=source.login, variant=group.picked_variant, by=group.picked_by,
            group_id=group.id))
        return
    variants = await groups.variants_of(ctx.db, group.id)
    running = [run.variant for run in variants if run.state in ACTIVE_VALUES]
    if running:
        await reply(ctx, gh, source, replies.PICK_WHILE_RUNNING.format(
            login=source.login, variants=_numbers(running)))
        return
    good = [run for run in variants if groups.pickable(run)]
    if not good:
        await reply(ctx, gh, source, replies.NONE_SUCCEEDED.format(
            login=source.login, group_id=group.id))
        return
    if command.variant is None:
        if len(good) > 1:
            await reply(ctx, gh, source, replies.PICK_WHICH.format(
                login=source.login, variants=_numbers([run.variant for run in good]),
                first=good[0].variant))
            return
        chosen = good[0]
    else:
        chosen = next((run for run in variants if run.variant == command.variant), None)
        if chosen is None or not groups.pickable(chosen):
            why = (replies.NO_SUCH_VARIANT.format(size=group.size) if chosen is None
                   else replies.NOT_PICKABLE.format(state=chosen.state))
            await reply(ctx, gh, source, replies.CANNOT_PICK.format(
                login=source.login, variant=command.variant, why=why,
                variants=_numbers([run.variant for run in good])))
            return
    if await groups.ask_pick(ctx.db, group.id, int(chosen.variant), source.login, delivery):
        ctx.on_run_change()
    else:  # another writer's pick came first
        now = await groups.get_group(ctx.db, group.id)
        await reply(ctx, gh, source, replies.ALREADY_PICKED.format(
            login=source.login, variant=now.picked_variant if now else "?",
            by=now.picked_by if now else "?", group_id=group.id))


def _numbers(numbers: list[int]) -> str:
    return ", ".join(str(n) for n in numbers)


ACTIVE_VALUES = frozenset(state.value for state in ACTIVE_STATES)


async def help_verb(ctx: Context, gh: Any, source: Source, command: Command) -> None:
    await reply(ctx, gh, source, help_text(ctx.settings.trigger_label))


VERBS: dict[str, Verb] = {
    "run": run_verb,
    "cancel": cancel_verb,
    "retry": retry_verb,
    "status": status_verb,
    "help": help_verb,
    "pick": pick_verb,
    "approve": approvals.approve_verb,
    "deny": approvals.deny_verb,
}
