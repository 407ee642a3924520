"""The reporter: turns each change of a run into check-run and status-comment updates."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
import time
from collections.abc import Callable
from typing import Any

import gidgethub
from sqlalchemy import and_, desc, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot import tasks
from bot.github import effects
from bot.github.client import RateLimited
from bot.github.pacing import Priority
from bot.loops import Backoff, Ticker
from bot.report import group_comment
from bot.report.text import Progress, Usage, check_run_body, comment_body
from bot.runs import groups, leases
from bot.runs.ledger import get_run
from bot.runs.refs import resolve_base
from bot.store.tables import (
    FINAL_STATES,
    RunState,
    gateway_audit,
    run_events,
    run_groups,
    run_usage,
    runs,
    utcnow,
)

log = logging.getLogger(__name__)

# GitHub's secondary limit allows about 80 content-creating requests a minute; progress
# updates share this much of it, so many running runs are each updated less often.
PROGRESS_PER_MINUTE = 30
PROGRESS_MIN_SECONDS = 10.0
BACKOFF_MAX_SECONDS = 600.0
REPORT_GAP_SECONDS = 0.1  # between two passes, however many runs changed meanwhile
_PROGRESS_KINDS = ("phase", "todo", "tool", "message")


class Reporter:
    """Prow's crier for one process: reports a run when its state or progress changed."""

    def __init__(self, engine: AsyncEngine, github: Any, *, tick_seconds: float = 2.0,
                 progress_seconds: float = PROGRESS_MIN_SECONDS,
                 clock: Callable[[], dt.datetime] = utcnow,
                 monotonic: Callable[[], float] = time.monotonic,
                 run_url: Callable[[int], str | None] = lambda run_id: None) -> None:
        self._engine = engine
        self._run_url = run_url  # the run's page (bot/web), linked when sign-in is on
        self._github = github
        self._progress_seconds = progress_seconds
        self._clock = clock
        self._failures = Backoff(5.0, 2.0, BACKOFF_MAX_SECONDS, monotonic)
        # Every run change wakes it; in a burst a pass (which reads every run not reported
        # yet) at most every REPORT_GAP_SECONDS, not one per change.
        self.ticker = Ticker("reporter", self.start_due, tick_seconds,
                             min_gap=REPORT_GAP_SECONDS)  # its loop
        self._reporting: dict[int, asyncio.Task[None]] = {}
        self._groups: dict[int, asyncio.Task[None]] = {}  # group comments being written
        self._closing = False

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self.ticker.start()

    def notify(self) -> None:
        """A run changed: report now instead of at the next tick."""
        self.ticker.notify()

    async def close(self) -> None:
        self._closing = True
        await self.ticker.close()
        for task in [*self._reporting.values(), *self._groups.values()]:
            await tasks.stop(task)

    def health(self) -> str | None:
        return self.ticker.health()

    # --- one pass --------------------------------------------------------------------------

    async def tick(self) -> None:
        """One pass, waiting for the reports it started (tests, `agentbot` commands)."""
        await self.start_due()
        await self.idle()

    async def start_due(self) -> None:
        """Report every run whose state changed, and running runs with new progress: each
        in a task of its own, so that a run waiting for its installation's GitHub budget
        holds up no other run (a run whose report is under way is not started again)."""
        for run_id in await self.due():
            if run_id not in self._reporting and not self._closing:
                task = asyncio.create_task(self._report_in_turn(run_id),
                                           name=f"report-{run_id}")
                self._reporting[run_id] = task
                task.add_done_callback(functools.partial(self._reported, run_id))
        for group_id in await self.due_groups():
            if group_id not in self._groups and not self._closing:
                task = asyncio.create_task(self._report_group_in_turn(group_id),
                                           name=f"report-group-{group_id}")
                self._groups[group_id] = task
                task.add_done_callback(functools.partial(self._group_reported, group_id))

    def _reported(self, run_id: int, _: asyncio.Task[None]) -> None:
        self._reporting.pop(run_id, None)

    def _group_reported(self, group_id: int, _: asyncio.Task[None]) -> None:
        self._groups.pop(group_id, None)

    async def idle(self) -> None:
        """Wait until no report is under way (tests; shutdown)."""
        while self._reporting or self._groups:
            await asyncio.gather(*self._reporting.values(), *self._groups.values(),
                                 return_exceptions=True)

    async def _report_in_turn(self, run_id: int) -> None:
        """Wait for the run's turn in its installation's write budget, then report what the
        run is at by then: an update that waited carries the latest state, once."""
        try:
            run = await get_run(self._engine, run_id)
            if run is None:
                return
            writes = getattr(self._github.installation(run.installation_id), "writes", None)
            if writes is None:
                await self.report(run_id)
                return
            level, count = write_turn(run)
            # No other gate after the turn: the writes it holds count against the budget
            # until answered, so nothing may keep it waiting (the budget bounds the work).
            async with writes.turn(count, level):
                await self.report(run_id)
        except Exception as exc:  # a database blip: try again later
            self._failed(run_id, exc)

    async def due_groups(self) -> list[int]:
        """Groups whose status comment is behind (a new group, a variant ended, a pick)."""
        async with self._engine.connect() as conn:
            ids = (await conn.execute(select(run_groups.c.id).where(
                run_groups.c.reported_version < run_groups.c.version)
                .order_by(run_groups.c.id))).scalars().all()
        return [i for i in ids if self._failures.due(("group", i))]

    async def _report_group_in_turn(self, group_id: int) -> None:
        """The group's comment in its installation's write budget: one write."""
        key = ("group", group_id)
        try:
            group = await groups.get_group(self._engine, group_id)
            if group is None:
                return
            writes = getattr(self._github.installation(group.installation_id), "writes", None)
            level = Priority.ACK if group.status_comment_id is None else Priority.RESULT
            async with writes.turn(1, level) if writes is not None else contextlib.nullcontext():
                await self.report_group(group_id)
        except Exception as exc:
            _, delay = self._failures.failed(
                key, at_least=exc.delay() if isinstance(exc, RateLimited) else 0.0)
            log.warning("could not report the group (%s: %s); trying again in %.0fs",
                        type(exc).__name__, exc, delay, extra={"group_id": group_id})
            return
        self._failures.forget(key)

    async def report_group(self, group_id: int) -> None:
        """Write the group's comment as the group is now, and mark that version reported
        (unless another process is at it: the next pass looks again)."""
        async with leases.holding(self._engine, group_id, "report-group",
                                  table=run_groups) as held:
            if held:
                await self._report_group(group_id)

    async def _report_group(self, group_id: int) -> None:
        group = await groups.get_group(self._engine, group_id)
        if group is None or group.reported_version >= group.version:
            return
        variants = await groups.variants_of(self._engine, group_id)
        now = self._clock()
        rows = []
        for run in variants:
            usage, _ = await load_gateway_records(self._engine, run.id)
            check = await effects.recorded(self._engine, f"check_run:{run.id}") or {}
            deleted = await effects.recorded(self._engine, f"delete_branch:{run.id}") or {}
            links = group_comment.links_of(run, check.get("html_url"), self._run_url(run.id),
                                           bool(deleted.get("deleted")))
            rows.append(group_comment.variant_row(run, usage, links, now))
        body = group_comment.group_comment_body(group, variants, rows)
        gh = self._github.installation(group.installation_id)
        comment = await group_comment.write(self._engine, gh, group, body)
        async with self._engine.begin() as conn:
            await conn.execute(update(run_groups).where(
                run_groups.c.id == group_id, run_groups.c.reported_version < group.version)
                .values(reported_version=group.version, status_comment_id=comment["id"]))

    async def due(self) -> list[int]:
        now = self._clock()
        async with self._engine.connect() as conn:
            running = (await conn.execute(select(func.count()).where(
                runs.c.state == RunState.RUNNING.value))).scalar_one()
            interval = max(self._progress_seconds, running * 60.0 / PROGRESS_PER_MINUTE)
            new_events = exists().where(
                run_events.c.run_id == runs.c.id,
                run_events.c.seq > func.coalesce(runs.c.last_reported_seq, -1),
                run_events.c.kind.in_(_PROGRESS_KINDS))
            ids = (await conn.execute(select(runs.c.id).where(or_(
                runs.c.last_reported_state.is_(None),
                runs.c.last_reported_state != runs.c.state,
                and_(runs.c.state == RunState.RUNNING.value,
                     or_(runs.c.last_reported_at.is_(None),
                         runs.c.last_reported_at <= now - dt.timedelta(seconds=interval)),
                     new_events),
            )).order_by(runs.c.id))).scalars().all()
        return [i for i in ids if self._failures.due(i)]

    async def report(self, run_id: int) -> bool:
        """Bring the run's check run and status comment up to date; False if not now."""
        async with leases.holding(self._engine, run_id, "report") as held:
            if not held:
                return False  # another process reports it; the next pass looks again
            try:
                await self._report(run_id)
            except Exception as exc:
                self._failed(run_id, exc)
                return False
        self._failures.forget(run_id)
        return True

    def _failed(self, run_id: int, exc: Exception) -> None:
        _, delay = self._failures.failed(
            run_id, at_least=exc.delay() if isinstance(exc, RateLimited) else 0.0)
        log.warning("could not report the run (%s: %s); trying again in %.0fs",
                    type(exc).__name__, exc, delay, extra={"run_id": run_id})

    async def _report(self, run_id: int) -> None:
        run = await get_run(self._engine, run_id)
        if run is None:
            return
        gh = self._github.installation(run.installation_id)
        head_sha: str | None
        try:
            head_sha, _ = await resolve_base(self._engine, gh, run)
        except gidgethub.BadRequest as exc:
            if exc.status_code not in (404, 409, 422):
                raise
            # The branch or commit is gone: the run cannot start, and a check run needs a
            # commit to sit on. The status comment still tells the story.
            head_sha = None
        progress = await load_progress(self._engine, run_id)
        now = self._clock()
        check = await self._check_run(gh, run, head_sha, progress, now) if head_sha else None
        values: dict[str, Any] = {"last_reported_state": run.state, "last_reported_at": now,
                                  "last_reported_seq": progress.seq}
        if check is not None:
            values["check_run_id"] = check["id"]
        # The status comment is written when the run is made, when it ends, and when it
        # leaves or comes back to waiting for approval (its text says how to approve).
        waiting = RunState.AWAITING_APPROVAL.value
        # A variant has none of its own: its group's comment tells (report_group).
        if run.group_id is None and (run.last_reported_state is None or (
                RunState(run.state) in FINAL_STATES
                and RunState(run.last_reported_state) not in FINAL_STATES) or (
                waiting in (run.state, run.last_reported_state)
                and run.state != run.last_reported_state)):
            comment = await self._comment(gh, run, (check or {}).get("html_url"), now,
                                          progress.usage)
            values["status_comment_id"] = comment["id"]
        async with self._engine.begin() as conn:
            await conn.execute(update(runs).where(runs.c.id == run_id).values(**values))

    async def _check_run(self, gh: Any, run: Any, head_sha: str, progress: Progress,
                         now: dt.datetime) -> dict[str, Any]:
        owner, _, repo = run.repo_full_name.partition("/")
        url_vars = {"owner": owner, "repo": repo}
        body = check_run_body(run, progress, now, self._run_url(run.id))
        created = False

        async def create() -> dict[str, Any]:
            nonlocal created
            made = await gh.post("/repos/{owner}/{repo}/check-runs", url_vars,
                                 data={**body, "head_sha": head_sha})
            created = True
            return {"id": made["id"], "html_url": made.get("html_url")}

        async def find() -> dict[str, Any] | None:
            async for found in gh.getiter(
                "/repos/{owner}/{repo}/commits/{ref}/check-runs{?check_name,filter,per_page}",
                {**url_vars, "ref": head_sha, "check_name": body["name"], "filter": "all",
                 "per_page": 100}, iterable_key="check_runs"):
                if found.get("external_id") == str(run.id):
                    return {"id": found["id"], "html_url": found.get("html_url")}
            return None

        check = await effects.once(self._engine, f"check_run:{run.id}", create, find)
        if not created:
            await gh.patch("/repos/{owner}/{repo}/check-runs/{check_run_id}",
                           {**url_vars, "check_run_id": check["id"]}, data=body)
        return check

    async def _comment(self, gh: Any, run: Any, check_url: str | None,
                       now: dt.datetime, usage: Usage | None = None) -> dict[str, Any]:
        owner, _, repo = run.repo_full_name.partition("/")
        key = f"status_comment:{run.id}"
        url_vars = {"owner": owner, "repo": repo, "issue_number": run.number}
        body = comment_body(run, check_url, now, usage, self._run_url(run.id))
        created = False

        async def create() -> dict[str, Any]:
            nonlocal created
            made = await gh.post("/repos/{owner}/{repo}/issues/{issue_number}/comments",
                                 url_vars, data={"body": body})
            created = True
            return {"id": made["id"], "html_url": made.get("html_url")}

        async def find() -> dict[str, Any] | None:
            return await effects.find_marked_comment(gh, url_vars, key)

        comment = await effects.once(self._engine, key, create, find)
        if not created:
            await gh.patch("/repos/{owner}/{repo}/issues/comments/{comment_id}",
                           {"owner": owner, "repo": repo, "comment_id": comment["id"]},
                           data={"body": body})
        return comment


def write_turn(run: Any) -> tuple[Priority, int]:
    """How urgent the run's next report is, and how many GitHub writes it makes at most.

    The first report (the check run and the status comment: the acknowledgement) goes
    first, then a final one (check run completed, comment edited); progress goes last."""
    state = RunState(run.state)
    comment = 1 if run.group_id is None else 0  # a variant's is its group's
    if run.last_reported_state is None:
        return Priority.ACK, 1 + comment
    if RunState.AWAITING_APPROVAL.value in (run.state, run.last_reported_state):
        return Priority.ACK, 2  # the comment says how to approve, or that it started
    if state in FINAL_STATES:
        return Priority.RESULT, 1 + comment
    return Priority.PROGRESS, 1


async def load_progress(db: AsyncEngine, run_id: int) -> Progress:
    """The newest phase, plan and step among the run's events."""
    async with db.connect() as conn:
        seq = (await conn.execute(select(func.max(run_events.c.seq)).where(
            run_events.c.run_id == run_id, run_events.c.kind.in_(_PROGRESS_KINDS)))
        ).scalar_one()
        latest: dict[str, Any] = {}
        for kinds in (("phase",), ("todo",), ("tool", "message")):
            row = (await conn.execute(
                select(run_events.c.kind, run_events.c.data)
                .where(run_events.c.run_id == run_id, run_events.c.kind.in_(kinds))
                .order_by(desc(run_events.c.seq)).limit(1))).first()
            if row is not None:
                latest[kinds[0]] = (row.kind, row.data or {})
    phase = step = None
    plan: list[dict[str, Any]] = []
    more = 0
    if "phase" in latest:
        data = latest["phase"][1]
        phase = str(data.get("phase") or "") or None
    if "todo" in latest:
        data = latest["todo"][1]
        plan = [i for i in data.get("items") or [] if isinstance(i, dict)]
        more = int(data.get("more") or 0)
    if "tool" in latest:
        kind, data = latest["tool"]
        if kind == "tool":
            step = f"`{data.get('name') or 'tool'}` {data.get('status') or ''}".strip()
            if data.get("input"):
                step += f": {data['input']}"
        else:
            step = str(data.get("text") or "") or None
    usage, refused = await load_gateway_records(db, run_id)
    return Progress(seq=-1 if seq is None else int(seq), phase=phase, plan=plan,
                    plan_more=more, step=step, usage=usage, refused=refused)


async def load_gateway_records(db: AsyncEngine, run_id: int
                               ) -> tuple[Usage | None, list[tuple[str, int]]]:
    """The run's model usage (summed) and the egress targets the gateway refused it, most
    often first, as the gateway recorded them."""
    async with db.connect() as conn:
        totals = (await conn.execute(select(
            func.count(), func.sum(run_usage.c.input_tokens), func.sum(run_usage.c.output_tokens),
            func.sum(run_usage.c.cache_read_tokens), func.sum(run_usage.c.cache_write_tokens),
            func.sum(run_usage.c.cost), func.count(run_usage.c.cost),
        ).where(run_usage.c.run_id == run_id))).one()
        models = (await conn.execute(select(run_usage.c.model).distinct().where(
            run_usage.c.run_id == run_id, run_usage.c.model.is_not(None))
            .order_by(run_usage.c.model))).scalars().all()
        audits = (await conn.execute(select(gateway_audit.c.data).where(
            gateway_audit.c.run_id == run_id, gateway_audit.c.kind == "egress")
            .order_by(gateway_audit.c.id))).scalars().all()
    usage = None
    if totals[0]:
        usage = Usage(input=int(totals[1] or 0), output=int(totals[2] or 0),
                      cache_read=int(totals[3] or 0), cache_write=int(totals[4] or 0),
                      models=tuple(models), cost=float(totals[5] or 0.0),
                      unpriced=int(totals[6] or 0) < int(totals[0]))
    counts: dict[str, int] = {}
    for data in audits:
        if isinstance(data, dict) and data.get("verdict") == "refused" and data.get("host"):
            target = f"{data['host']}:{data.get('port')}"
            counts[target] = counts.get(target, 0) + 1
    refused = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return usage, refused
