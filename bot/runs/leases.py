"""Short leases, so that one process at a time publishes or reports a run (or writes a
variant group's comment), or runs a loop that only one replica may run (the redelivery
reconciler)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import socket
import uuid
from collections.abc import AsyncIterator

from sqlalchemy import Table, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.store.tables import loop_leases, run_groups, runs, utcnow

# The tables whose rows carry a lease (`id`, `lease_owner`, `lease_until`).
LEASED = (runs, run_groups)

# Longer than any one report or publish takes; a crashed holder blocks the run this long.
LEASE = dt.timedelta(seconds=120)
_PROCESS = f"{socket.gethostname()}:{os.getpid()}"


def new_owner(purpose: str) -> str:
    """A holder name unique to this process, purpose and acquisition."""
    return f"{_PROCESS}:{purpose}:{uuid.uuid4().hex[:8]}"[:64]


async def acquire(db: AsyncEngine, row_id: int, owner: str, table: Table = runs) -> bool:
    """Take the row's lease (a run's, or a group's with `table=run_groups`) if it is free or
    expired; False while someone else holds it."""
    now = utcnow()
    async with db.begin() as conn:
        result = await conn.execute(
            update(table).where(table.c.id == row_id, or_(
                table.c.lease_owner.is_(None), table.c.lease_owner == owner,
                table.c.lease_until < now))
            .values(lease_owner=owner, lease_until=now + LEASE))
    return result.rowcount == 1


async def release(db: AsyncEngine, row_id: int, owner: str, table: Table = runs) -> None:
    async with db.begin() as conn:
        await conn.execute(update(table).where(table.c.id == row_id,
                                               table.c.lease_owner == owner)
                           .values(lease_owner=None, lease_until=None))


@contextlib.asynccontextmanager
async def holding(db: AsyncEngine, row_id: int, purpose: str,
                  table: Table = runs) -> AsyncIterator[bool]:
    """`async with holding(...) as held:` work only when `held`; released on the way out."""
    owner = new_owner(purpose)
    try:
        held = await acquire(db, row_id, owner, table)
    except BaseException:
        # Cancelled (a shutdown) after the UPDATE may have committed: do not leave the row
        # locked for the lease's length.
        with contextlib.suppress(Exception):
            await asyncio.shield(release(db, row_id, owner, table))
        raise
    renewing = asyncio.create_task(_renew(db, row_id, owner, table)) if held else None
    try:
        yield held
    finally:
        if renewing is not None:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await renewing
        if held:
            await asyncio.shield(release(db, row_id, owner, table))


async def _renew(db: AsyncEngine, row_id: int, owner: str, table: Table) -> None:
    """Keep a held lease while the work goes on: its writes may wait their turn in GitHub's
    budget for longer than one lease lasts."""
    while True:
        await asyncio.sleep(LEASE.total_seconds() / 3)
        # A database blip: the next renewal, well before the lease runs out, tries again.
        with contextlib.suppress(Exception):
            await acquire(db, row_id, owner, table)


async def release_all(db: AsyncEngine) -> int:
    """Free every lease: on SQLite one process owns the file, so any lease is a dead one's."""
    freed = 0
    async with db.begin() as conn:
        for table in (*LEASED, loop_leases):
            result = await conn.execute(update(table)
                                        .where(table.c.lease_owner.is_not(None))
                                        .values(lease_owner=None, lease_until=None))
            freed += int(result.rowcount or 0)
    return freed


async def acquire_loop(db: AsyncEngine, name: str, owner: str,
                       seconds: float) -> bool:
    """Take (or renew) the named loop's lease for `seconds`; False while another holds it."""
    now = utcnow()
    until = now + dt.timedelta(seconds=seconds)
    async with db.begin() as conn:
        result = await conn.execute(
            update(loop_leases).where(loop_leases.c.name == name, or_(
                loop_leases.c.lease_owner.is_(None), loop_leases.c.lease_owner == owner,
                loop_leases.c.lease_until < now))
            .values(lease_owner=owner, lease_until=until))
        if result.rowcount == 1:
            return True
    try:
        # The loop's first lease ever: two replicas may race to create it; one wins.
        async with db.begin() as conn:
            await conn.execute(insert(loop_leases).values(name=name, lease_owner=owner,
                                                          lease_until=until))
    except IntegrityError:
        return False
    return True


async def loop_holder(db: AsyncEngine, name: str) -> tuple[str | None, dt.datetime | None]:
    """Who holds the named loop's lease, and until when (None, None when nobody)."""
    async with db.connect() as conn:
        row = (await conn.execute(select(loop_leases.c.lease_owner, loop_leases.c.lease_until)
                                  .where(loop_leases.c.name == name))).first()
    if row is None or row.lease_owner is None or row.lease_until is None:
        return None, None
    until = row.lease_until if row.lease_until.tzinfo else row.lease_until.replace(tzinfo=dt.UTC)
    return row.lease_owner, until


async def release_loop(db: AsyncEngine, name: str, owner: str) -> None:
    """Give the named loop's lease up (on shutdown), so another replica takes it at once."""
    async with db.begin() as conn:
        await conn.execute(update(loop_leases).where(loop_leases.c.name == name,
                                                     loop_leases.c.lease_owner == owner)
                           .values(lease_owner=None, lease_until=None))
