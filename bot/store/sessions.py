"""Stored agent sessions: one archive a run, in the database or in a directory the operator
names, expired with the run's events."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.store.tables import run_sessions, runs, utcnow


@dataclass(frozen=True)
class StoredSession:
    """What is known of a run's session; `expired` once retention dropped its archive."""

    run_id: int
    agent: str
    session_id: str
    size: int
    expired: bool


def _file(directory: Path, run_id: int) -> Path:
    return directory / f"run-{int(run_id)}.session.tar.gz"


def _write_file(path: Path, data: bytes) -> None:
    """Write `data` to `path` whole or not at all (a temporary file renamed over it)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(path.name + f".{os.getpid()}.tmp")
    with open(temporary, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)


async def store(engine: AsyncEngine, run_id: int, agent: str, session_id: str, data: bytes,
                directory: Path | None = None) -> None:
    """Keep `data` as the session of `run_id` (replacing one stored before)."""
    values: dict[str, Any] = {
        "agent": agent, "session_id": session_id, "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(), "stored_at": utcnow(), "expired_at": None,
        "data": None if directory else data}
    if directory is not None:
        await asyncio.to_thread(_write_file, _file(directory, run_id), data)
    async with engine.begin() as conn:
        await conn.execute(delete(run_sessions).where(run_sessions.c.run_id == run_id))
        await conn.execute(insert(run_sessions).values(run_id=run_id, **values))


async def describe(engine: AsyncEngine, run_id: int) -> StoredSession | None:
    """The run's stored session, without its archive; None when it has none."""
    async with engine.connect() as conn:
        row = (await conn.execute(
            select(run_sessions.c.run_id, run_sessions.c.agent, run_sessions.c.session_id,
                   run_sessions.c.size, run_sessions.c.expired_at)
            .where(run_sessions.c.run_id == run_id))).first()
    if row is None:
        return None
    return StoredSession(int(row.run_id), row.agent, row.session_id, int(row.size),
                         row.expired_at is not None)


async def load(engine: AsyncEngine, run_id: int, directory: Path | None = None) -> bytes | None:
    """The archive of the run's session, checked against its digest; None when there is
    none, it expired, or its file is gone or altered."""
    async with engine.connect() as conn:
        row = (await conn.execute(
            select(run_sessions.c.data, run_sessions.c.sha256, run_sessions.c.expired_at)
            .where(run_sessions.c.run_id == run_id))).first()
    if row is None or row.expired_at is not None:
        return None
    data = row.data
    if data is None and directory is not None:
        try:
            data = await asyncio.to_thread(_file(directory, run_id).read_bytes)
        except OSError:
            return None
    if data is None or hashlib.sha256(data).hexdigest() != row.sha256:
        return None
    return bytes(data)


async def expire(engine: AsyncEngine, cutoff: dt.datetime, directory: Path | None = None,
                 batch: int = 500) -> int:
    """Drop the archives of runs that finished before `cutoff` (the rows stay, marked
    expired, so a later run can say why it started fresh); returns how many."""
    expired = (select(run_sessions.c.run_id).join(runs, runs.c.id == run_sessions.c.run_id)
               .where(run_sessions.c.expired_at.is_(None), runs.c.finished_at.is_not(None),
                      runs.c.finished_at < cutoff).limit(batch))
    total = 0
    while True:
        async with engine.begin() as conn:
            ids = [int(i) for i in (await conn.execute(expired)).scalars().all()]
            if ids:
                await conn.execute(update(run_sessions).where(run_sessions.c.run_id.in_(ids))
                                   .values(data=None, expired_at=utcnow()))
        if directory is not None:
            for run_id in ids:
                with contextlib.suppress(FileNotFoundError):
                    await asyncio.to_thread(_file(directory, run_id).unlink)
        total += len(ids)
        if len(ids) < batch:
            return total
