"""Whether the database takes writes: a statement that needs the write lock and changes nothing."""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

# How long the probe waits for SQLite's write lock; the connections' own busy timeout (5 s)
# would hold a readiness check far past Kubernetes' patience.
SQLITE_PROBE_BUSY_MS = 250

# A delete that matches no row: SQLite takes its write lock for it, and PostgreSQL refuses it
# in a read-only transaction (default_transaction_read_only, a hot standby), yet it writes
# nothing, not even a WAL record, so probing every few seconds costs nothing.
_PROBE = text("DELETE FROM loop_leases WHERE 1 = 0")


async def write_problem(engine: AsyncEngine, within: float) -> str | None:
    """None when the database answers and would take a write, else what is wrong."""
    try:
        async with asyncio.timeout(within):
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
                sqlite = engine.dialect.name == "sqlite"
                if sqlite:  # put back after the probe: the connection goes back to the pool
                    busy = (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar_one()
                    await conn.exec_driver_sql(f"PRAGMA busy_timeout={SQLITE_PROBE_BUSY_MS}")
                try:
                    await conn.execute(_PROBE)
                except Exception as exc:  # noqa: BLE001 - any refusal is the answer
                    return f"database refuses writes ({_reason(exc)})"
                finally:
                    await conn.rollback()
                    if sqlite:
                        await conn.exec_driver_sql(f"PRAGMA busy_timeout={int(busy)}")
    except Exception as exc:  # noqa: BLE001 - any failure means not ready
        return f"database unreachable ({type(exc).__name__})"
    return None


def _reason(exc: Exception) -> str:
    """The driver's own words, first line only (no statement, no parameters)."""
    original = getattr(exc, "orig", None) or exc
    words = str(original).strip().splitlines()
    return words[0][:200] if words else type(original).__name__
