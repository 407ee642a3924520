"""The background pass that ends runs nobody approved within AGENTBOT_APPROVAL_TTL."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.commands import replies
from bot.commands.approvals import ttl_text
from bot.loops import Ticker
from bot.runs import ledger
from bot.store.tables import RunState, runs, utcnow

log = logging.getLogger(__name__)

# Often enough that a request ends within minutes of its time; the query is one index scan.
PASS_SECONDS = 300.0


class ApprovalExpiry:
    """Ends each run still awaiting approval `ttl` seconds after it was asked for as
    `expired`; the reporter then completes its check run and rewrites its status comment."""

    def __init__(self, engine: AsyncEngine, ttl: int, *,
                 on_change: Callable[[], None] = lambda: None,
                 clock: Callable[[], dt.datetime] = utcnow,
                 seconds: float = PASS_SECONDS) -> None:
        self._engine, self._ttl, self._on_change, self._clock = engine, ttl, on_change, clock
        self.ticker = Ticker("approval expiry", self.tick, min(seconds, max(ttl / 2, 1.0)),
                             stuck_after=dt.timedelta(seconds=max(seconds * 3, 300)))

    def start(self) -> None:
        self.ticker.start()

    async def close(self) -> None:
        await self.ticker.close()

    def health(self) -> str | None:
        return self.ticker.health()

    async def tick(self) -> None:
        """One pass; several replicas may run it at once (each run moves once)."""
        await self.expire()

    async def expire(self) -> list[int]:
        """End the requests older than the TTL; returns the ids of the runs it ended."""
        cutoff = self._clock() - dt.timedelta(seconds=self._ttl)
        async with self._engine.connect() as conn:
            due = (await conn.execute(
                select(runs.c.id).where(runs.c.state == RunState.AWAITING_APPROVAL.value,
                                        runs.c.created_at <= cutoff)
                .order_by(runs.c.id))).scalars().all()
        reason = replies.EXPIRED_REASON.format(ttl=ttl_text(self._ttl))
        ended = [run_id for run_id in due
                 if await ledger.transition(self._engine, run_id, RunState.EXPIRED, reason,
                                            error=reason)]
        if ended:
            log.info("%d runs expired waiting for approval", len(ended),
                     extra={"run_ids": ended})
            self._on_change()
        return ended
