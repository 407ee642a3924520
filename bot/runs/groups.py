"""Variant groups: N runs of one request made together, and the pick of the one to keep."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import desc, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot.runs.ledger import AlreadyActive, NewRun, lock_issue
from bot.store.tables import (
    ACTIVE_STATES,
    RunState,
    run_groups,
    run_transitions,
    runs,
    utcnow,
)

log = logging.getLogger(__name__)

# pick_state: a writer asked (the publisher opens the PR and deletes the other branches),
# it is done, or GitHub refused it (a writer may pick again).
PICK_PENDING = "pending"
PICK_DONE = "done"
PICK_FAILED = "failed"
DELIVERY_ID_MAX = 64  # runs.delivery_id


@dataclass(frozen=True)
class GroupCreated:
    group_id: int
    run_ids: tuple[int, ...]


@dataclass(frozen=True)
class GroupExists:
    group: Any  # the group this delivery made on an earlier attempt


def variant_delivery(delivery_id: str, variant: int) -> str:
    """A variant's own delivery id (runs.delivery_id is unique): the request's, numbered; a
    digest of it where the number would not fit the column (GitHub's GUIDs always fit)."""
    suffix = f":v{variant}"
    if len(delivery_id) + len(suffix) > DELIVERY_ID_MAX:
        delivery_id = hashlib.sha256(delivery_id.encode()).hexdigest()[:40]
    return delivery_id + suffix


async def create_group(db: AsyncEngine, new: NewRun, spread: list[tuple[str, str | None]],
                       retry_of: int | None = None
                       ) -> GroupCreated | GroupExists | AlreadyActive:
    """Insert a group and its variants (queued; variant k runs spread[k-1]'s agent and model)
    in one transaction, unless this delivery made it already or a run of the issue or PR is
    active."""
    existing = await group_by_delivery(db, new.delivery_id)
    if existing is not None:
        return GroupExists(existing)
    now = utcnow()
    try:
        async with db.begin() as conn:
            await lock_issue(conn, new.repo_id, new.number)
            active = (await conn.execute(select(runs).where(
                runs.c.repo_id == new.repo_id, runs.c.number == new.number,
                runs.c.state.in_([s.value for s in ACTIVE_STATES])).limit(1))).first()
            if active is not None:
                return AlreadyActive(active)
            group_id = (await conn.execute(insert(run_groups).values(
                installation_id=new.installation_id, repo_id=new.repo_id,
                repo_full_name=new.repo_full_name, number=new.number, size=len(spread),
                delivery_id=new.delivery_id, sender_login=new.sender_login,
                retry_of=retry_of, created_at=now, updated_at=now,
                version=1, reported_version=0).returning(run_groups.c.id))).scalar_one()
            ids = []
            for k, (agent, model) in enumerate(spread, start=1):
                variant = dataclasses.replace(
                    new, agent=agent, model=model, group_id=group_id, variant=k,
                    delivery_id=variant_delivery(new.delivery_id, k))
                values = {**variant.__dict__, "state": RunState.QUEUED.value,
                          "created_at": now, "updated_at": now}
                run_id = (await conn.execute(insert(runs).values(**values)
                                             .returning(runs.c.id))).scalar_one()
                await conn.execute(insert(run_transitions).values(
                    run_id=run_id, from_state=None, to_state=RunState.QUEUED.value,
                    reason=f"{new.trigger} by @{new.sender_login} (variant {k} of "
                           f"{len(spread)})", at=now))
                ids.append(run_id)
    except IntegrityError:
        # A concurrent attempt of this very delivery won the race.
        existing = await group_by_delivery(db, new.delivery_id)
        if existing is None:
            raise
        return GroupExists(existing)
    log.info("group queued", extra={"group_id": group_id, "repo": new.repo_full_name,
                                    "number": new.number, "variants": len(spread)})
    return GroupCreated(group_id, tuple(ids))


async def group_by_delivery(db: AsyncEngine, delivery_id: str) -> Any | None:
    async with db.connect() as conn:
        return (await conn.execute(select(run_groups).where(
            run_groups.c.delivery_id == delivery_id))).first()


async def get_group(db: AsyncEngine | AsyncConnection, group_id: int) -> Any | None:
    if isinstance(db, AsyncEngine):
        async with db.connect() as conn:
            return await get_group(conn, group_id)
    return (await db.execute(select(run_groups).where(run_groups.c.id == group_id))).first()


async def variants_of(db: AsyncEngine | AsyncConnection, group_id: int) -> list[Any]:
    """The group's runs, by variant number."""
    if isinstance(db, AsyncEngine):
        async with db.connect() as conn:
            return await variants_of(conn, group_id)
    return list((await db.execute(select(runs).where(runs.c.group_id == group_id)
                                  .order_by(runs.c.variant))).all())


async def latest_group(db: AsyncEngine, repo_id: int, number: int) -> Any | None:
    """The issue's or PR's newest group, if it has one."""
    async with db.connect() as conn:
        return (await conn.execute(select(run_groups).where(
            run_groups.c.repo_id == repo_id, run_groups.c.number == number)
            .order_by(desc(run_groups.c.id)).limit(1))).first()


def pickable(run: Any) -> bool:
    """A variant that succeeded with a commit on its branch (not one without changes)."""
    return run.state == RunState.SUCCEEDED.value and bool(run.commit_sha and run.branch)


async def ask_pick(db: AsyncEngine, group_id: int, variant: int, login: str,
                   delivery_id: str) -> bool:
    """Record that `login` picked `variant` (the publisher carries it out); False when the
    group has a pick already (one under way or done), unless it is this delivery's."""
    now = utcnow()
    async with db.begin() as conn:
        result = await conn.execute(update(run_groups).where(
            run_groups.c.id == group_id,
            (run_groups.c.pick_state.is_(None)) | (run_groups.c.pick_state == PICK_FAILED))
            .values(picked_variant=variant, picked_by=login, picked_at=now,
                    pick_state=PICK_PENDING, pick_error=None, pick_delivery_id=delivery_id,
                    updated_at=now))  # the comment changes once, when the pick is done
        if result.rowcount == 1:
            log.info("variant picked", extra={"group_id": group_id, "variant": variant,
                                               "login": login})
            return True
        group = await get_group(conn, group_id)
    return group is not None and group.pick_delivery_id == delivery_id


async def end_pick(db: AsyncEngine, group_id: int, state: str, error: str | None = None
                   ) -> None:
    """The pick is done (or refused, with why): the status comment says so next."""
    async with db.begin() as conn:
        await conn.execute(update(run_groups).where(
            run_groups.c.id == group_id, run_groups.c.pick_state == PICK_PENDING)
            .values(pick_state=state, pick_error=error, version=run_groups.c.version + 1,
                    updated_at=utcnow()))


async def pending_picks(db: AsyncEngine) -> list[int]:
    async with db.connect() as conn:
        return list((await conn.execute(select(run_groups.c.id).where(
            run_groups.c.pick_state == PICK_PENDING).order_by(run_groups.c.id))
        ).scalars().all())
