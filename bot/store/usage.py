"""Sums over the model usage ledger (`run_usage`): of a run, a person or an installation."""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.store.tables import run_usage, runs

_TOKENS = (run_usage.c.input_tokens + run_usage.c.output_tokens
           + run_usage.c.cache_read_tokens + run_usage.c.cache_write_tokens)


class UsageSum(NamedTuple):
    """Every billed token, the dollars of the priced ones, and the tokens without a price."""

    tokens: int
    dollars: float
    unpriced_tokens: int


async def total(db: AsyncEngine | AsyncConnection, *, run_id: int | None = None,
                sender_id: int | None = None, installation_id: int | None = None,
                since: dt.datetime | None = None) -> UsageSum:
    """The usage booked for one run, or for the runs of a person or an installation (booked
    at or after `since`)."""
    query = select(func.coalesce(func.sum(_TOKENS), 0),
                   func.coalesce(func.sum(run_usage.c.cost), 0.0),
                   func.coalesce(func.sum(case((run_usage.c.cost.is_(None), _TOKENS),
                                               else_=0)), 0))
    if sender_id is not None or installation_id is not None:
        query = query.select_from(run_usage.join(runs, runs.c.id == run_usage.c.run_id))
        if sender_id is not None:
            query = query.where(runs.c.sender_id == sender_id)
        if installation_id is not None:
            query = query.where(runs.c.installation_id == installation_id)
    if run_id is not None:
        query = query.where(run_usage.c.run_id == run_id)
    if since is not None:
        query = query.where(run_usage.c.at >= since)
    if isinstance(db, AsyncEngine):
        async with db.connect() as conn:
            row = (await conn.execute(query)).one()
    else:
        row = (await db.execute(query)).one()
    return UsageSum(int(row[0]), float(row[1]), int(row[2]))


async def runs_started(db: AsyncEngine, sender_id: int, since: dt.datetime) -> int:
    """How many runs this person triggered since then (retries and refused ones aside: every
    run row counts, whatever became of it)."""
    async with db.connect() as conn:
        return int((await conn.execute(
            select(func.count()).select_from(runs)
            .where(runs.c.sender_id == sender_id, runs.c.created_at >= since))).scalar_one())
