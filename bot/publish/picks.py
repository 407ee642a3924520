"""Picks of variants: the picked variant's PR, the other variants' branches deleted; resumed
after a crash, exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.github.pacing import Priority, priority
from bot.loops import Backoff
from bot.publish.publisher import Publisher, Refused
from bot.redact import describe_error, redact
from bot.runs import groups, leases
from bot.store.tables import runs, utcnow

log = logging.getLogger(__name__)

PICK_ATTEMPTS = 6
PICK_FAILED = "could not carry out the pick after {attempts} attempts: {error}"


class PickQueue:
    """Groups whose `pick_state` is pending: one task each, retried with backoff; the
    pending state in the database is what a restarted process resumes."""

    def __init__(self, engine: AsyncEngine, publisher: Publisher,
                 on_change: Callable[[], None]) -> None:
        self._engine = engine
        self._publisher = publisher
        self._on_change = on_change
        self._failures = Backoff(5.0, 4.0, 600.0)
        self._tasks: dict[int, asyncio.Task[None]] = {}

    async def pending(self) -> None:
        """Start every pending pick whose backoff has passed (and is not under way)."""
        for group_id in await groups.pending_picks(self._engine):
            if group_id not in self._tasks and self._failures.due(group_id):
                task = asyncio.create_task(self._pick_logged(group_id),
                                           name=f"pick-{group_id}")
                self._tasks[group_id] = task
                task.add_done_callback(functools.partial(self._done, group_id))

    def _done(self, group_id: int, _: asyncio.Task[None]) -> None:
        self._tasks.pop(group_id, None)

    async def idle(self) -> None:
        while self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def close(self, grace: float = 10.0) -> None:
        """Let picks under way finish for `grace` seconds, then stop them (the next process
        resumes a pending one)."""
        tasks = list(self._tasks.values())
        if tasks:
            await asyncio.wait(tasks, timeout=grace)
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _pick_logged(self, group_id: int) -> None:
        try:
            await self.pick(group_id)
        except Exception:  # a database blip: it stays pending, the next pass retries
            log.exception("picking stopped unexpectedly", extra={"group_id": group_id})

    async def pick(self, group_id: int) -> None:
        """Carry out the group's pending pick: the picked variant's PR (or its PR branch
        moved), its number on the variant's run, the other variants' branches deleted."""
        group = await groups.get_group(self._engine, group_id)
        if group is None or group.pick_state != groups.PICK_PENDING:
            return
        variants = await groups.variants_of(self._engine, group_id)
        chosen = next((v for v in variants if v.variant == group.picked_variant), None)
        if chosen is None or not groups.pickable(chosen):
            await groups.end_pick(self._engine, group_id, groups.PICK_FAILED,
                                  "the picked variant has no commit to keep")
            self._on_change()
            return
        async with leases.holding(self._engine, chosen.id, "pick") as held:
            if not held:
                return  # another replica is at it
            try:
                with priority(Priority.RESULT):
                    await self._carry_out(chosen, variants)
            except Refused as exc:
                await groups.end_pick(self._engine, group_id, groups.PICK_FAILED,
                                      redact(str(exc)))
                self._on_change()
                return
            except Exception as exc:
                await self._failed(group_id, exc)
                return
        self._failures.forget(group_id)
        await groups.end_pick(self._engine, group_id, groups.PICK_DONE)
        log.info("pick done", extra={"group_id": group_id, "run_id": chosen.id})
        self._on_change()

    async def _carry_out(self, chosen: Any, variants: list[Any]) -> None:
        published = await self._publisher.pick(chosen)
        async with self._engine.begin() as conn:
            await conn.execute(update(runs).where(runs.c.id == chosen.id).values(
                pr_number=published.pr_number, pr_url=published.pr_url, updated_at=utcnow()))
        for run in variants:
            # The picked variant's branch is the PR's head; moved onto a PR's own branch,
            # it is left over like the others.
            keep = run.id == chosen.id and published.pr_number is not None
            if not keep and run.branch and run.commit_sha and run.branch != chosen.head_ref:
                try:
                    await self._publisher.delete_branch(run)
                except Refused as exc:
                    # The PR is open: a branch GitHub keeps (protected, say) does not undo
                    # the pick, and failing it would invite a second PR.
                    log.warning("could not delete a variant's branch: %s", exc,
                                extra={"run_id": run.id})

    async def _failed(self, group_id: int, exc: Exception) -> None:
        count, delay = self._failures.failed(group_id)
        error = describe_error(exc)
        if count >= PICK_ATTEMPTS:
            log.error("giving up a pick: %s", error, extra={"group_id": group_id})
            self._failures.forget(group_id)
            await groups.end_pick(self._engine, group_id, groups.PICK_FAILED,
                                  PICK_FAILED.format(attempts=count, error=error))
            self._on_change()
            return
        log.warning("picking failed (%s); trying again in %.0fs", error, delay,
                    extra={"group_id": group_id})
