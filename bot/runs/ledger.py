"""The run ledger: create runs, find them, and move them through their states."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import bindparam, desc, insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.sql.expression import ClauseElement

from bot.store.tables import (
    ACTIVE_STATES,
    FINAL_STATES,
    TRANSITIONS,
    RunState,
    run_groups,
    run_transitions,
    runs,
    utcnow,
)

log = logging.getLogger(__name__)

# Told (engine, final state, seconds since the run started) when a started run finishes; the
# metrics subscribe. It fires inside the transaction, so a rollback after it over-counts one.
FINISHED_OBSERVERS: list[Callable[[AsyncEngine, RunState, float], None]] = []


@dataclass(frozen=True)
class NewRun:
    """Everything a trigger decides about a run before it exists."""

    installation_id: int
    repo_id: int
    repo_full_name: str
    clone_url: str
    number: int
    is_pull_request: bool
    base_ref: str
    trigger: str
    sender_login: str
    sender_id: int
    delivery_id: str
    agent: str
    timeout_seconds: int
    title: str = ""
    body: str = ""
    instructions: str = ""
    model: str | None = None
    head_ref: str | None = None
    base_sha: str | None = None
    comment_id: int | None = None
    retry_of: int | None = None
    context: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] | None = None  # the repo config that applied (repo_config.Effective)
    # Who wrote the inputs and whether they may write (see runs.provenance in store.tables).
    provenance: dict[str, Any] | None = None
    inputs_sha256: str | None = None
    approved_by: str | None = None  # a writer who approved an outsider's request (a retry)
    group_id: int | None = None  # a variant's group (run_groups), and its number there
    variant: int | None = None


@dataclass(frozen=True)
class Created:
    run_id: int


@dataclass(frozen=True)
class AlreadyActive:
    run: Any  # the active run's row


@dataclass(frozen=True)
class AlreadyCreated:
    run: Any  # the run this delivery created on an earlier attempt


async def create_run(db: AsyncEngine, new: NewRun, state: RunState = RunState.QUEUED
                     ) -> Created | AlreadyActive | AlreadyCreated:
    """Insert a queued run (or one awaiting approval) unless this delivery made one already
    or one is active."""
    existing = await by_delivery(db, new.delivery_id)
    if existing is not None:
        return AlreadyCreated(existing)
    now = utcnow()
    values = {**new.__dict__, "state": state.value, "created_at": now, "updated_at": now}
    if new.approved_by:
        values["approved_at"] = now
    try:
        async with db.begin() as conn:
            # A group's variants are outside the unique index: look for them under the lock
            # a group's creation takes too.
            await lock_issue(conn, new.repo_id, new.number)
            variant = (await conn.execute(select(runs).where(
                runs.c.repo_id == new.repo_id, runs.c.number == new.number,
                runs.c.group_id.is_not(None),
                runs.c.state.in_([s.value for s in ACTIVE_STATES])).limit(1))).first()
            if variant is not None:
                return AlreadyActive(variant)
            run_id = (await conn.execute(insert(runs).values(**values).returning(runs.c.id))
                      ).scalar_one()
            await conn.execute(insert(run_transitions).values(
                run_id=run_id, from_state=None, to_state=state.value,
                reason=f"{new.trigger} by @{new.sender_login}", at=now))
    except IntegrityError:
        # The partial unique index says another run of this issue or PR is active
        # (or a concurrent attempt of this very delivery won the race).
        existing = await by_delivery(db, new.delivery_id)
        if existing is not None:
            return AlreadyCreated(existing)
        active = await active_run(db, new.repo_id, new.number)
        if active is None:  # it finished in between: a rare race, let the caller retry
            raise
        return AlreadyActive(active)
    log.info("run %s", state.value, extra={"run_id": run_id, "repo": new.repo_full_name,
                                           "number": new.number, "trigger": new.trigger})
    return Created(run_id)


async def lock_issue(conn: AsyncConnection, repo_id: int, number: int) -> None:
    """Serialise the creation of runs and groups of one issue or PR until the transaction
    ends (PostgreSQL; SQLite lets one writer in at a time anyway)."""
    if conn.dialect.name == "postgresql":
        digest = hashlib.sha256(f"issue:{repo_id}:{number}".encode()).digest()
        await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                           {"key": int.from_bytes(digest[:8], "big", signed=True)})


# The statements every run goes through several times, built once: SQLAlchemy builds a
# statement and its cache key afresh on each call otherwise (a third of a get_run's CPU).
_RUN = select(runs).where(runs.c.id == bindparam("run_id"))
_STATE = select(runs.c.state).where(runs.c.id == bindparam("run_id"))
# The SET clause comes from the parameters' keys (the columns to change).
_MOVE = update(runs).where(runs.c.id == bindparam("run_id_"), runs.c.state == bindparam("from_"))
_RECORD = insert(run_transitions)
_COLUMNS = frozenset(runs.c.keys())


async def get_run(db: AsyncEngine, run_id: int) -> Any | None:
    async with db.connect() as conn:
        return (await conn.execute(_RUN, {"run_id": run_id})).first()


async def by_delivery(db: AsyncEngine, delivery_id: str) -> Any | None:
    async with db.connect() as conn:
        return (await conn.execute(select(runs).where(runs.c.delivery_id == delivery_id))
                ).first()


async def active_run(db: AsyncEngine, repo_id: int, number: int) -> Any | None:
    async with db.connect() as conn:
        return (await conn.execute(
            select(runs).where(runs.c.repo_id == repo_id, runs.c.number == number,
                               runs.c.state.in_([s.value for s in ACTIVE_STATES]))
        )).first()


async def runs_of(db: AsyncEngine, repo_id: int, number: int, limit: int = 20) -> list[Any]:
    """The latest runs of an issue or PR, newest first."""
    async with db.connect() as conn:
        return list((await conn.execute(
            select(runs).where(runs.c.repo_id == repo_id, runs.c.number == number)
            .order_by(desc(runs.c.id)).limit(limit)
        )).all())


async def transition(db: AsyncEngine | AsyncConnection, run_id: int, to: RunState,
                     reason: str | None = None, **values: Any) -> bool:
    """Move a run to `to` if its current state allows it; record the change once.

    Returns False (and changes nothing) when the run is already there or past it,
    which makes every caller idempotent.
    """
    if isinstance(db, AsyncEngine):
        async with db.begin() as conn:
            return await transition(conn, run_id, to, reason, **values)
    conn = db
    current = (await conn.execute(_STATE, {"run_id": run_id})).scalar_one_or_none()
    if current is None:
        raise LookupError(f"run {run_id} does not exist")
    if to not in TRANSITIONS[RunState(current)]:
        return False
    now = utcnow()
    changes: dict[str, Any] = {"state": to.value, "updated_at": now}
    if to == RunState.STARTING:
        changes["started_at"] = now
    if to in FINAL_STATES:
        changes["finished_at"] = now
    changes.update(values)
    if unknown := values.keys() - _COLUMNS:  # as .values() would refuse them
        raise ValueError(f"runs has no column {', '.join(sorted(unknown))}")
    # The WHERE on the old state makes a concurrent writer's change win exactly once.
    if any(isinstance(value, ClauseElement) for value in values.values()):
        result = await conn.execute(update(runs).where(
            runs.c.id == run_id, runs.c.state == current).values(**changes))
    else:
        result = await conn.execute(_MOVE, {**changes, "run_id_": run_id, "from_": current})
    if result.rowcount != 1:
        return False
    await conn.execute(_RECORD, {"run_id": run_id, "from_state": current,
                                 "to_state": to.value, "reason": reason, "at": now})
    if to in FINAL_STATES:
        # A variant's end is news for its group's status comment, in the same transaction.
        group_id = (await conn.execute(select(runs.c.group_id).where(runs.c.id == run_id))
                    ).scalar_one()
        if group_id is not None:
            await conn.execute(update(run_groups).where(run_groups.c.id == group_id).values(
                version=run_groups.c.version + 1, updated_at=now))
    log.info("run %s -> %s", current, to.value, extra={"run_id": run_id, "reason": reason})
    if to in FINAL_STATES and FINISHED_OBSERVERS:
        await _tell_finished(conn, run_id, to, now)
    return True


async def _tell_finished(conn: AsyncConnection, run_id: int, state: RunState,
                         now: dt.datetime) -> None:
    started = (await conn.execute(select(runs.c.started_at).where(runs.c.id == run_id))
               ).scalar_one()
    if started is None:  # cancelled or failed while queued: it never ran
        return
    if started.tzinfo is None:  # SQLite hands times back without their zone
        started = started.replace(tzinfo=dt.UTC)
    for observer in list(FINISHED_OBSERVERS):
        try:
            observer(conn.engine, state, (now - started).total_seconds())
        except Exception:  # a metrics bug must not undo the run's transition
            log.exception("a finished-run observer failed")


async def request_cancel(db: AsyncEngine, run_id: int, by: str) -> RunState | None:
    """Cancel a queued run (or one awaiting approval) at once; mark a started one for the
    launcher to stop.

    Returns the state the run is in afterwards, or None when it was already final.
    """
    async with db.begin() as conn:
        state = (await conn.execute(select(runs.c.state).where(runs.c.id == run_id))
                 ).scalar_one_or_none()
        if state is None or RunState(state) in FINAL_STATES:
            return None
        if state in (RunState.QUEUED, RunState.AWAITING_APPROVAL):
            await transition(conn, run_id, RunState.CANCELLED, f"cancelled by @{by}")
            return RunState.CANCELLED
        await conn.execute(update(runs).where(runs.c.id == run_id)
                           .values(cancel_requested=True, updated_at=utcnow()))
        return RunState(state)


async def update_if(conn: AsyncConnection, run_id: int, state: RunState, **values: Any) -> bool:
    """Set columns of a run while it is still in `state` (no transition); True if it was."""
    result = await conn.execute(
        update(runs).where(runs.c.id == run_id, runs.c.state == state.value)
        .values(updated_at=utcnow(), **values))
    return bool(result.rowcount == 1)
