"""/readyz reports a database that answers but refuses writes (issue 14, part 3): SQLite's write
lock held by another process, PostgreSQL read-only; asked over HTTP, answered in bounded time."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bot.app import BOT_KEY, create_app
from bot.cli.dryrun import RecordingGitHub
from bot.config.settings import Settings
from bot.intake.inbox import InboxOptions
from tests.conftest import PG_ENV

# Holds SQLite's write lock (BEGIN IMMEDIATE) until its stdin closes.
LOCKER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.read()
conn.execute("ROLLBACK")
"""


@asynccontextmanager
async def writes_refused(database_url: str, engine: AsyncEngine) -> AsyncIterator[None]:
    """While inside, the database refuses the bot's writes, the way each one does in life."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        locker = await asyncio.create_subprocess_exec(
            sys.executable, "-c", LOCKER, str(url.database),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
        assert locker.stdout is not None and locker.stdin is not None
        assert await asyncio.wait_for(locker.stdout.readline(), 10) == b"locked\n"
        try:
            yield
        finally:
            locker.stdin.close()
            await asyncio.wait_for(locker.wait(), 10)
        return
    # PostgreSQL: this test's own database turns read-only for new sessions (as after a
    # failover to a standby); the bot's pooled sessions are dropped so that it sees it.
    import os

    admin = create_async_engine(os.environ[PG_ENV], isolation_level="AUTOCOMMIT")
    name = url.database
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'ALTER DATABASE "{name}" SET default_transaction_read_only'
                                    " = on"))
        await engine.dispose()
        yield
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'ALTER DATABASE "{name}" RESET default_transaction_read_only'))
        await admin.dispose()
        await engine.dispose()


async def test_ready_is_503_while_the_database_refuses_writes(
        aiohttp_client: Any, make_settings: Callable[..., Settings], database_url: str) -> None:
    app = create_app(make_settings(database_url=database_url), github=RecordingGitHub(payload={}),
                     inbox_options=InboxOptions(poll_seconds=3600))
    client = await aiohttp_client(app)
    bot = client.app[BOT_KEY]
    assert (await client.get("/readyz")).status == 200

    async with writes_refused(database_url, bot.engine):
        began = time.monotonic()
        response = await client.get("/readyz")
        assert response.status == 503
        assert time.monotonic() - began < 1.5  # Kubernetes' probe gives up after 1 s by default
        problems = " ".join((await response.json())["problems"])
        assert "database refuses writes" in problems
        assert "locked" in problems or "read-only" in problems
        assert (await client.get("/healthz")).status == 200  # alive all the same

    response = await client.get("/readyz")
    assert response.status == 200, await response.text()
    async with bot.engine.connect() as conn:
        # The probe leaves nothing behind, and the pool's SQLite connections keep their
        # own patience for the write lock.
        assert (await conn.execute(text("SELECT count(*) FROM loop_leases"))).scalar() == 0
        if bot.engine.dialect.name == "sqlite":
            busy = (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar()
            assert busy == 5000
