"""Runs whose result waits to be published: one process at a time, retried with backoff."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.github.pacing import Priority, priority
from bot.loops import Backoff
from bot.publish.publisher import Publisher, Refused, is_partial
from bot.redact import describe_error, redact
from bot.runs import leases
from bot.runs.ledger import get_run
from bot.store.tables import FINAL_STATES, RunState, runs, utcnow

log = logging.getLogger(__name__)

PUBLISH_FAILED = "could not publish the result after {attempts} attempts: {error}"
PUBLISH_ATTEMPTS = 6
RETRY_BASE_SECONDS = 5.0
RETRY_MAX_SECONDS = 600.0
_STARTED = (RunState.STARTING.value, RunState.RUNNING.value)

Finish = Callable[..., Awaitable[bool]]  # (run_id, state, reason, **values) -> changed


class PublishQueue:
    """`publish_state = pending` marks a run to publish; crashes and other replicas resume it."""

    def __init__(self, engine: AsyncEngine, publisher: Publisher, finish: Finish) -> None:
        self._engine = engine
        self._publisher = publisher
        self._finish = finish
        self._failures = Backoff(RETRY_BASE_SECONDS, 4.0, RETRY_MAX_SECONDS)
        # One task per run being published: its GitHub writes may wait their turn in the
        # installation's write budget, and nobody else waits for them meanwhile.
        self._tasks: dict[int, asyncio.Task[None]] = {}

    async def enqueue(self, run_id: int) -> None:
        """Mark the run's result for publishing, then start publishing it (in a task)."""
        async with self._engine.begin() as conn:
            await conn.execute(update(runs).where(
                runs.c.id == run_id, runs.c.publish_state.is_(None))
                .values(publish_state="pending", updated_at=utcnow()))
        self.start(run_id)

    async def pending(self) -> None:
        """Start every run still waiting whose backoff has passed (and is not under way)."""
        async with self._engine.connect() as conn:
            ids = (await conn.execute(select(runs.c.id).where(
                runs.c.publish_state == "pending", runs.c.state.in_(_STARTED))
                .order_by(runs.c.id))).scalars().all()
        for run_id in ids:
            if self._failures.due(run_id):
                self.start(run_id)

    def start(self, run_id: int) -> None:
        """Publish the run in a task of its own, unless one is at it already."""
        if run_id in self._tasks:
            return
        task = asyncio.create_task(self._publish_logged(run_id), name=f"publish-{run_id}")
        self._tasks[run_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(run_id, None))

    async def idle(self) -> None:
        """Wait until no run is being published (tests, and a clean shutdown)."""
        while self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def close(self, grace: float = 10.0) -> None:
        """Let publishing under way finish for up to `grace` seconds, then stop it (a run
        left pending is published by the next process, exactly once)."""
        tasks = list(self._tasks.values())
        if tasks:
            await asyncio.wait(tasks, timeout=grace)
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _publish_logged(self, run_id: int) -> None:
        try:
            await self.publish(run_id)
        except Exception:  # a database blip: the run stays pending, the next pass retries
            log.exception("publishing stopped unexpectedly", extra={"run_id": run_id})

    async def publish(self, run_id: int) -> None:
        """Publish the run and end it: succeeded with its PR, or failed with the refusal."""
        async with leases.holding(self._engine, run_id, "publish") as held:
            if not held:
                return  # another replica is at it
            run = await get_run(self._engine, run_id)
            if (run is None or run.publish_state != "pending"
                    or RunState(run.state) in FINAL_STATES):
                return
            # A run whose budget ran out ends budget_exceeded, whatever became of its work.
            partial = is_partial(run)
            try:
                with priority(Priority.RESULT):
                    published = await self._publisher.publish(run)
            except Refused as exc:
                reason = redact(str(exc))
                await self._finish(run_id, RunState.BUDGET_EXCEEDED if partial
                                   else RunState.FAILED, "refused", error=reason,
                                   publish_state="refused")
                return
            except Exception as exc:
                await self._failed(run_id, exc)
                return
            self._failures.forget(run_id)
            what = (f"opened PR #{published.pr_number}" if published.pr_number
                    else f"pushed to {published.branch}")
            if partial:
                what = f"budget reached ({run.budget_reached}); {what} with the partial work"
            await self._finish(run_id, RunState.BUDGET_EXCEEDED if partial
                               else RunState.SUCCEEDED, what, publish_state="done",
                               branch=published.branch, commit_sha=published.commit_sha,
                               pr_number=published.pr_number, pr_url=published.pr_url)

    async def _failed(self, run_id: int, exc: Exception) -> None:
        count, delay = self._failures.failed(run_id)
        error = describe_error(exc)
        if count >= PUBLISH_ATTEMPTS:
            log.error("giving up publishing: %s", error, extra={"run_id": run_id})
            self._failures.forget(run_id)
            reason = PUBLISH_FAILED.format(attempts=count, error=error)
            run = await get_run(self._engine, run_id)
            state = RunState.BUDGET_EXCEEDED if is_partial(run) else RunState.FAILED
            await self._finish(run_id, state, reason, error=reason, publish_state="failed")
            return
        log.warning("publishing failed (%s); trying again in %.0fs", error, delay,
                    extra={"run_id": run_id})
