"""Expired transcripts and sessions: a pass that deletes the events and the agent sessions of
runs that ended long enough ago."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.loops import Ticker
from bot.store import sessions as stored_sessions
from bot.store.tables import run_events, runs, utcnow

log = logging.getLogger(__name__)

EVERY_SECONDS = 3600.0
BATCH = 5_000  # rows a statement deletes: short transactions, so writers never wait long


class Retention:
    """Every hour (the first time an hour after start), deletes the events of runs that
    finished more than `seconds` ago.

    The runs themselves stay (their result and outcome); the page then says the transcript
    expired. Deleting twice is harmless, so every replica may run it without a lease.
    """

    def __init__(self, engine: AsyncEngine, seconds: int, *, every: float = EVERY_SECONDS,
                 clock: Callable[[], dt.datetime] = utcnow,
                 session_dir: Path | None = None) -> None:
        self._engine = engine
        self._session_dir = session_dir
        self.sessions_expired = 0
        self._seconds = seconds
        self._clock = clock
        self.ticker = Ticker("event retention pass", self._pass, every,
                             stuck_after=dt.timedelta(seconds=2 * every + 300))
        self.deleted = 0
        # The first pass comes one period after start, not at once: a process that starts
        # and stops (a restart, `agentbot receive`) never stops in the middle of one.
        self._waited = False

    def start(self) -> None:
        self.ticker.start()

    async def close(self) -> None:
        await self.ticker.close()

    def health(self) -> str | None:
        return self.ticker.health()

    async def _pass(self) -> None:
        if not self._waited:
            self._waited = True
            return
        await self.delete_expired()

    async def delete_expired(self) -> int:
        """Delete every expired event, a batch at a time; returns how many."""
        cutoff = self._clock() - dt.timedelta(seconds=self._seconds)
        expired = select(run_events.c.id).join(runs, runs.c.id == run_events.c.run_id).where(
            runs.c.finished_at.is_not(None), runs.c.finished_at < cutoff).limit(BATCH)
        total = 0
        while True:
            async with self._engine.begin() as conn:
                ids = (await conn.execute(expired)).scalars().all()
                if ids:
                    await conn.execute(delete(run_events).where(run_events.c.id.in_(ids)))
            total += len(ids)
            if len(ids) < BATCH:
                break
            await asyncio.sleep(0)  # let webhooks and pages in between batches
        if total:
            self.deleted += total
            log.info("deleted %d events of runs that ended before %s", total,
                     cutoff.strftime("%Y-%m-%d %H:%M UTC"))
        # Agent sessions go with the transcript they continue.
        dropped = await stored_sessions.expire(self._engine, cutoff, self._session_dir)
        if dropped:
            self.sessions_expired += dropped
            log.info("dropped the agent sessions of %d runs that ended before %s", dropped,
                     cutoff.strftime("%Y-%m-%d %H:%M UTC"))
        return total


def keeping(engine: Callable[[], AsyncEngine | None], seconds: int,
            health_checks: list[Any], *,
            session_dir: Path | None = None) -> Callable[[Any], AsyncIterator[None]]:
    """A cleanup context for the public app: the pass runs while the app does (after the bot
    has opened its database)."""

    async def context(app: Any) -> AsyncIterator[None]:
        opened = engine()
        if opened is None:
            raise RuntimeError("the retention pass starts after the bot")
        retention = Retention(opened, seconds, session_dir=session_dir)
        retention.start()
        health_checks.append(retention.health)
        try:
            yield
        finally:
            health_checks.remove(retention.health)
            await retention.close()

    return context
