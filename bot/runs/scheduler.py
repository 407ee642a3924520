"""The launcher: starts queued runs within the limits and moves runs as their sandboxes change."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import and_, func, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot import tasks
from bot.config.settings import Settings
from bot.executors.base import Executor, SandboxPhase, SandboxSecrets, SandboxStatus
from bot.gateway import credentials
from bot.gateway.credentials import gateway_key
from bot.loops import Ticker
from bot.publish.picks import PickQueue
from bot.publish.publisher import Publisher
from bot.publish.queue import PublishQueue
from bot.redact import describe_error
from bot.runs import leases
from bot.runs.callbacks import Result, callback_key, run_token
from bot.runs.launch import InstallationClients, make_executor, run_spec
from bot.runs.ledger import get_run, transition
from bot.runs.refs import resolve_base

__all__ = ["Scheduler", "make_executor"]
from bot.store.tables import FINAL_STATES, RunState, runs, utcnow
from sandbox import exitcodes

log = logging.getLogger(__name__)

NO_RESULT = "the sandbox exited without uploading a result"
VANISHED = "sandbox vanished"
START_FAILED = "could not start the sandbox: {error}"
AGENT_FAILED = "the agent reported a failure"
CANCELLED = "cancel requested"
# The local executor's sandboxes call back to the replica that launched them, on its loopback:
# one replica at a time may run it. It holds this lease while it does, renewed every tick.
LOCAL_EXECUTOR_LEASE = "local-executor"
LOCAL_LEASE_SECONDS = 30.0
LOCAL_TAKEN = ("another agentbot process ({holder}) runs sandboxes with the local executor on "
               "this database; the local executor runs on one replica only (its sandboxes "
               "call back to the process that started them): stop the other, or use the "
               "kubernetes executor for several replicas")
# Any constant shared by every replica: the lock that serialises claims on PostgreSQL.
CLAIM_LOCK = 0x61676E74
# Queued runs claimed per transaction: few transactions for a burst, short ones for others.
CLAIM_BATCH = 64
LAUNCH_GRACE_SECONDS = 10.0
_STARTED = (RunState.STARTING.value, RunState.RUNNING.value)
_ENDED = (SandboxPhase.SUCCEEDED, SandboxPhase.FAILED, SandboxPhase.GONE)


class StartRefused(RuntimeError):
    """This process may not launch runs (another replica holds the local executor)."""


class Scheduler:
    """Prow's plank in one object: queued -> starting -> running -> final, one loop."""

    def __init__(self, engine: AsyncEngine, executor: Executor, github: InstallationClients,
                 settings: Settings, *, key: bytes | None = None,
                 tick_seconds: float = 5.0, publisher: Publisher | None = None,
                 on_change: Callable[[], None] = lambda: None) -> None:
        self._engine = engine
        self._executor = executor
        self._github = github
        self._settings = settings
        self._key = key if key is not None else callback_key(settings.private_key_pem() or "")
        self._on_change = on_change
        publisher = publisher or Publisher(engine, github, settings)
        self._publishing = PublishQueue(engine, publisher, self._finish)
        # `/agent pick` of a variant: the handler records it, this carries it out.
        self._picks = PickQueue(engine, publisher, on_change)
        self._ticker = Ticker("scheduler", self.tick, tick_seconds)
        self._watch_task: asyncio.Task[None] | None = None
        self._closing = False
        self._started = False
        # The sandbox's gateway credential derives from the App key like the callback token:
        # nothing is stored, and the gateway honours it only while the run is active.
        self._gateway_key = gateway_key(settings.private_key_pem() or "")
        self._local = getattr(executor, "name", None) == "local"
        self._lease_owner = leases.new_owner(LOCAL_EXECUTOR_LEASE)
        self._lease_lost = False
        # Sandboxes being started now, at most AGENTBOT_MAX_PARALLEL_LAUNCHES at a time.
        self._launching: dict[int, asyncio.Task[None]] = {}

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Reconcile with the executor, then run the loop and the status watch."""
        if self._local:
            await self._take_local_executor()
        self._started = True
        await self.reconcile()
        self._ticker.start()
        self._watch_task = asyncio.create_task(self._watch(), name="scheduler-statuses")

    @property
    def started(self) -> bool:
        """True once `start` was called: this process launches runs."""
        return self._started

    async def idle(self) -> None:
        """Wait until no launch and no publishing is under way (tests; shutdown)."""
        while self._launching:
            await asyncio.gather(*self._launching.values(), return_exceptions=True)
        await self._publishing.idle()
        await self._picks.idle()

    def notify(self) -> None:
        """A run was queued or changed: look now instead of at the next tick."""
        self._ticker.notify()

    async def close(self) -> None:
        """Stop the loop and the watch; sandboxes keep running and their credentials stay
        valid while their runs are active."""
        self._closing = True
        await self._ticker.close()
        # Launches under way finish (a claimed run whose launch is cut short is started
        # again by the next process's reconcile); publishing gets a grace period.
        if self._launching:
            await asyncio.wait(list(self._launching.values()), timeout=LAUNCH_GRACE_SECONDS)
        for task in list(self._launching.values()):
            await tasks.stop(task)
        await self._publishing.close()
        await self._picks.close()
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch_task
            self._watch_task = None
        if self._local and self._started:
            with contextlib.suppress(Exception):  # a lease left behind only expires later
                await leases.release_loop(self._engine, LOCAL_EXECUTOR_LEASE,
                                          self._lease_owner)

    async def _take_local_executor(self) -> None:
        """Hold the local executor's lease, or StartRefused naming who holds it. A holder
        that died (its lease runs out within a minute) is waited for once."""
        if await leases.acquire_loop(self._engine, LOCAL_EXECUTOR_LEASE, self._lease_owner,
                                     LOCAL_LEASE_SECONDS):
            return
        holder, until = await leases.loop_holder(self._engine, LOCAL_EXECUTOR_LEASE)
        wait = (until - utcnow()).total_seconds() + 1 if until is not None else 0
        if 0 < wait <= LOCAL_LEASE_SECONDS + 1:
            log.warning("waiting %.0f s for the local executor's lease of %s to run out",
                        wait, holder)
            await asyncio.sleep(wait)
            if await leases.acquire_loop(self._engine, LOCAL_EXECUTOR_LEASE,
                                         self._lease_owner, LOCAL_LEASE_SECONDS):
                return
            holder, _ = await leases.loop_holder(self._engine, LOCAL_EXECUTOR_LEASE)
        raise StartRefused(LOCAL_TAKEN.format(holder=holder or "unknown"))

    def health(self) -> str | None:
        """None when the loop and the executor's status stream are alive, else the problem."""
        if problem := self._ticker.health():
            return problem
        if self._lease_lost:
            return "another process holds the local executor's lease"
        if self._watch_task is None or self._watch_task.done():
            return "the executor's status stream has stopped"
        if getattr(self._executor, "watching", True) is False:
            return "the executor is not watching its sandboxes"
        return None

    async def _watch(self) -> None:
        async for status in self._executor.statuses():
            try:
                await self.apply(status)
            except Exception:
                log.exception("could not apply a sandbox status", extra={"run_id": status.run_id})
        if not self._closing:
            log.error("the executor's status stream ended")

    # --- one pass --------------------------------------------------------------------------

    async def tick(self) -> None:
        """Stop runs whose cancel was requested, publish finished ones, start queued ones."""
        if self._local:
            held = await leases.acquire_loop(self._engine, LOCAL_EXECUTOR_LEASE,
                                             self._lease_owner, LOCAL_LEASE_SECONDS)
            if not held and not self._lease_lost:
                log.error("the local executor's lease went to another process; this one "
                          "launches nothing more")
            self._lease_lost = not held
        await self._cancel_requested()
        await self._publishing.pending()
        await self._picks.pending()
        if not self._lease_lost:
            await self._launch_queued()

    async def _cancel_requested(self) -> None:
        async with self._engine.connect() as conn:
            # Once its result is being published, a run is past cancelling: it ends as
            # published or refused, never half of it.
            ids = (await conn.execute(select(runs.c.id).where(
                runs.c.cancel_requested.is_(True), runs.c.state.in_(_STARTED),
                runs.c.publish_state.is_(None)))).scalars().all()
        for run_id in ids:
            try:
                await self._executor.cancel(run_id)
            except Exception as exc:  # the next pass tries again
                log.warning("could not cancel the sandbox (%s)", type(exc).__name__,
                            extra={"run_id": run_id})
                continue
            await self._finish(run_id, RunState.CANCELLED, CANCELLED)

    async def _launch_queued(self) -> None:
        """Claim queued runs, oldest first, as far as the limits and the free launch slots
        allow, and start each claimed run's sandbox in a task of its own."""
        free = self._settings.max_parallel_launches - len(self._launching)
        if free <= 0 or self._closing:
            return  # a launch that ends looks again
        after: tuple[Any, int] | None = None
        while free > 0:
            # A page at a time, oldest first: in a burst a pass runs for every launch that
            # ends, and reading every queued run each time cost O(N^2) rows for N triggers.
            page = await self._queued_page(after)
            if not page:
                break
            claimed, full = await self._claim(page, free)
            for run_id in claimed:
                self._start_launch(run_id)
            free -= len(claimed)
            if full or len(page) < CLAIM_BATCH:
                break
            after = (page[-1].created_at, page[-1].id)

    async def _queued_page(self, after: tuple[Any, int] | None) -> Sequence[Any]:
        """Up to CLAIM_BATCH queued runs in launch order, after (created_at, id) `after`."""
        query = (select(runs.c.id, runs.c.installation_id, runs.c.created_at)
                 .where(runs.c.state == RunState.QUEUED.value))
        if after is not None:
            created_at, run_id = after
            query = query.where(or_(runs.c.created_at > created_at,
                                    and_(runs.c.created_at == created_at, runs.c.id > run_id)))
        async with self._engine.connect() as conn:
            return (await conn.execute(query.order_by(runs.c.created_at, runs.c.id)
                                       .limit(CLAIM_BATCH))).all()

    def _start_launch(self, run_id: int) -> None:
        task = asyncio.create_task(self._launch(run_id), name=f"launch-{run_id}")
        self._launching[run_id] = task

        def done(_: asyncio.Task[None]) -> None:
            self._launching.pop(run_id, None)
            if not self._closing:
                self._ticker.notify()  # a slot is free: claim the next

        task.add_done_callback(done)

    async def _claim(self, rows: Sequence[Any], most: int) -> tuple[list[int], bool]:
        """queued -> starting for as many of `rows` (oldest first) as the limits allow, at
        most `most`, counted and moved in one transaction. Returns the claimed ids, and
        whether AGENTBOT_MAX_CONCURRENT_RUNS is reached (nothing else may start)."""
        settings = self._settings
        claimed: list[int] = []
        async with self._engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Replicas count and claim one at a time, so together they keep the limits.
                await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                                   {"key": CLAIM_LOCK})
            counts: dict[int, int] = dict((await conn.execute(
                select(runs.c.installation_id, func.count())
                .where(runs.c.state.in_(_STARTED)).group_by(runs.c.installation_id))).all())
            active = sum(counts.values())
            for row in rows:
                if active >= settings.max_concurrent_runs:
                    return claimed, True
                if len(claimed) >= most:
                    break
                if counts.get(row.installation_id, 0) >= settings.max_runs_per_installation:
                    continue  # this installation's share is used up; others may go
                # The WHERE on the state inside makes a replica's (or a cancel's) move win.
                if await transition(conn, row.id, RunState.STARTING, "scheduled"):
                    claimed.append(row.id)
                    active += 1
                    counts[row.installation_id] = counts.get(row.installation_id, 0) + 1
        return claimed, False

    async def _launch(self, run_id: int) -> None:
        """Start the run's sandbox with its two per-run credentials; a failure fails the run."""
        run = await get_run(self._engine, run_id)
        if run is None or run.state != RunState.STARTING.value:
            return
        gateway_token = credentials.issue(self._gateway_key, run_id)
        try:
            base_sha = run.base_sha or await self._resolve_base(run)
            spec = run_spec(run, self._settings, base_sha)
            async with self._engine.begin() as conn:
                await conn.execute(update(runs).where(runs.c.id == run_id).values(
                    base_sha=base_sha, branch=spec.branch, updated_at=utcnow()))
            await self._executor.start(spec, SandboxSecrets(gateway_token,
                                                            run_token(self._key, run_id)))
        except Exception as exc:
            reason = START_FAILED.format(error=describe_error(exc, gateway_token))
            log.warning("%s", reason, extra={"run_id": run_id})
            await self._finish(run_id, RunState.FAILED, reason, error=reason)
            return
        log.info("sandbox started", extra={"run_id": run_id, "executor": self._executor.name})

    async def _resolve_base(self, run: Any) -> str:
        gh = self._github.installation(run.installation_id)
        sha, _ = await resolve_base(self._engine, gh, run)
        return sha

    # --- statuses --------------------------------------------------------------------------

    async def reconcile(self) -> None:
        """After a restart: adopt live sandboxes, restart lost `starting` runs, fail the rest."""
        async with self._engine.connect() as conn:
            active = {row.id: row for row in (await conn.execute(
                select(runs.c.id, runs.c.state, runs.c.cancel_requested)
                .where(runs.c.state.in_(_STARTED)))).all()}
        for status in await self._executor.reconcile(set(active)):
            row = active.get(status.run_id)
            if (row is not None and status.phase is SandboxPhase.GONE
                    and row.state == RunState.STARTING.value and not row.cancel_requested):
                # Crashed between the claim and the sandbox: names are deterministic, so
                # starting again cannot make a second sandbox.
                log.info("restarting a run whose sandbox was never made",
                         extra={"run_id": status.run_id})
                await self._launch(status.run_id)
            else:
                await self.apply(status)

    async def apply(self, status: SandboxStatus) -> None:
        """Move the run as its sandbox's status says (a final run stays as it is)."""
        phase = status.phase
        if phase is SandboxPhase.PENDING:
            return  # nothing moves: not worth reading the run (every new Job is pending)
        run = await get_run(self._engine, status.run_id)
        if run is None or RunState(run.state) in FINAL_STATES:
            return
        if phase in _ENDED and run.budget_reached_at is not None:
            # The gateway refused the agent's model for its budget, and the agent stopped
            # (with an error or without): its work so far is published as partial.
            await self._budget_spent(run)
            return
        if phase is SandboxPhase.RUNNING:
            if await transition(self._engine, run.id, RunState.RUNNING, "sandbox running"):
                self._on_change()
        elif phase is SandboxPhase.SUCCEEDED:
            await self._succeeded(run)
        elif phase is SandboxPhase.FAILED and status.exit_code == exitcodes.TIMEOUT:
            # The runner's own limit (set a little inside the Job's deadline) stopped it.
            reason = status.reason or f"the run ran past its {run.timeout_seconds}s limit"
            await self._finish(run.id, RunState.TIMED_OUT, reason, error=reason)
        elif phase is SandboxPhase.FAILED:
            reason = status.reason or f"the sandbox failed (exit code {status.exit_code})"
            await self._finish(run.id, RunState.FAILED, reason, error=reason)
        elif phase is SandboxPhase.TIMED_OUT:
            reason = status.reason or f"the run ran past its {run.timeout_seconds}s limit"
            await self._finish(run.id, RunState.TIMED_OUT, reason, error=reason)
        elif phase is SandboxPhase.GONE:
            if run.result is not None and run.result.get("status") != "failed":
                # The sandbox uploaded its result, then its Job went (its TTL ran out while
                # the bot was down, say): the work is done and can be published.
                await self._succeeded(run)
            elif run.cancel_requested and run.publish_state is None:
                await self._finish(run.id, RunState.CANCELLED, CANCELLED)
            else:
                reason = VANISHED + (f": {status.reason}" if status.reason else "")
                await self._finish(run.id, RunState.FAILED, reason, error=reason)

    async def _succeeded(self, run: Any) -> None:
        result = run.result
        if result is None:
            await self._finish(run.id, RunState.FAILED, NO_RESULT, error=NO_RESULT)
        elif result.get("status") == "failed":
            await self._failed_result(run.id, result.get("summary") or "",
                                      result.get("stats") or {})
        elif result.get("status") == "no_changes":
            await self._finish(run.id, RunState.SUCCEEDED, "result: no_changes")
        else:
            await self._publishing.enqueue(run.id)

    async def on_result(self, run_id: int, result: Result) -> None:
        """The callbacks' ResultHook: a failed result ends the run now (or, where the run's
        budget ran out, publishes its work so far); a successful one waits for the sandbox's
        exit (SUCCEEDED)."""
        if result.status != "failed":
            return
        run = await get_run(self._engine, run_id)
        if run is not None and run.budget_reached_at is not None:
            await self._budget_spent(run)
            return
        await self._failed_result(run_id, result.summary, result.stats)

    async def _budget_spent(self, run: Any) -> None:
        """End a run whose budget ran out: publish what it changed, or end it at once."""
        if run.result is None:
            # The sandbox ended without a result; nothing of its work can be kept.
            reason = f"budget reached ({run.budget_reached}); {NO_RESULT}"
            await self._finish(run.id, RunState.BUDGET_EXCEEDED, reason, error=NO_RESULT)
        elif run.result.get("changes"):
            await self._publishing.enqueue(run.id)
        elif run.publish_state is None:
            await self._finish(run.id, RunState.BUDGET_EXCEEDED,
                               f"budget reached ({run.budget_reached}); no changes")

    async def _failed_result(self, run_id: int, summary: str, stats: dict[str, Any]) -> None:
        if stats.get("timed_out") is True:
            await self._finish(run_id, RunState.TIMED_OUT, "time limit",
                               error=summary or "the run ran past its time limit")
        else:
            await self._finish(run_id, RunState.FAILED, AGENT_FAILED,
                               error=summary or AGENT_FAILED)

    async def _finish(self, run_id: int, to: RunState, reason: str, **values: Any) -> bool:
        changed = await transition(self._engine, run_id, to, reason, **values)
        if changed:
            self._on_change()
        return changed

