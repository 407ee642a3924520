"""Short per-run leases, so that one process at a time publishes or reports a run."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import socket
import uuid
from collections.abc import AsyncIterator

from sqlalchemy import or_, update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.store.tables import runs, utcnow

# Longer than any one report or publish takes; a crashed holder blocks the run this long.
LEASE = dt.timedelta(seconds=120)
_PROCESS = f"{socket.gethostname()}:{os.getpid()}"


def new_owner(purpose: str) -> str:
    """A holder name unique to this process, purpose and acquisition."""
    return f"{_PROCESS}:{purpose}:{uuid.uuid4().hex[:8]}"[:64]


async def acquire(db: AsyncEngine, run_id: int, owner: str) -> bool:
    """Take the run's lease if it is free or expired; False while someone else holds it."""
    now = utcnow()
    async with db.begin() as conn:
        result = await conn.execute(
            update(runs).where(runs.c.id == run_id, or_(
                runs.c.lease_owner.is_(None), runs.c.lease_owner == owner,
                runs.c.lease_until < now))
            .values(lease_owner=owner, lease_until=now + LEASE))
    return result.rowcount == 1


async def release(db: AsyncEngine, run_id: int, owner: str) -> None:
    async with db.begin() as conn:
        await conn.execute(update(runs).where(runs.c.id == run_id, runs.c.lease_owner == owner)
                           .values(lease_owner=None, lease_until=None))


@contextlib.asynccontextmanager
async def holding(db: AsyncEngine, run_id: int, purpose: str) -> AsyncIterator[bool]:
    """`async with holding(...) as held:` work only when `held`; released on the way out."""
    owner = new_owner(purpose)
    try:
        held = await acquire(db, run_id, owner)
    except BaseException:
        # Cancelled (a shutdown) after the UPDATE may have committed: do not leave the run
        # locked for the lease's length.
        with contextlib.suppress(Exception):
            await asyncio.shield(release(db, run_id, owner))
        raise
    try:
        yield held
    finally:
        if held:
            await asyncio.shield(release(db, run_id, owner))


async def release_all(db: AsyncEngine) -> int:
    """Free every lease: on SQLite one process owns the file, so any lease is a dead one's."""
    async with db.begin() as conn:
        result = await conn.execute(update(runs).where(runs.c.lease_owner.is_not(None))
                                    .values(lease_owner=None, lease_until=None))
    return int(result.rowcount or 0)
