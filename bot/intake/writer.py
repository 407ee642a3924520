"""Group-committed, deduplicating writes of webhook deliveries, one driver call per batch."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from bot import tasks
from bot.store.tables import DeliveryStatus, deliveries, utcnow

log = logging.getLogger(__name__)

MAX_BATCH = 512
# GitHub gives up after 10 s; refuse well before that even when the database hangs.
STORE_TIMEOUT_SECONDS = 8.0

# The intake's columns; the others keep their defaults (NULL). `received_at` is also the
# first `next_attempt_at`, and `done_handlers` starts as the empty JSON list.
# A conflict on the delivery id (GitHub's redelivery) or on the body's hash (a replay under
# a new id) stores nothing: either way the delivery is here already.
SQLITE_INSERT = (
    "INSERT INTO deliveries (delivery_id, event, action, installation_id, payload, "
    "payload_sha256, received_at, status, attempts, next_attempt_at, done_handlers) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, '[]') ON CONFLICT DO NOTHING"
)
# asyncpg's executemany sends every row's Bind and Execute, then one Sync: one round trip,
# one transaction, one commit for the whole batch.
POSTGRES_INSERT = (
    "INSERT INTO deliveries (delivery_id, event, action, installation_id, payload, "
    "payload_sha256, received_at, status, attempts, next_attempt_at, done_handlers) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $7, '[]'::json) "
    "ON CONFLICT DO NOTHING"
)
# A 12 KB payload is compressed before it is stored; lz4 takes a third of the server's time
# per row that the default pglz does. Servers built without lz4 (or before 14) keep pglz.
POSTGRES_SESSION = "SET default_toast_compression = lz4"
PENDING = DeliveryStatus.PENDING.value


class StoreUnavailable(Exception):
    """The database did not take the delivery; the sender should try again later."""


class DeliveryRefused(Exception):
    """The database refused this one delivery (its values, not the database's state)."""


# What a row's own values make a driver raise, as opposed to a database that is away.
_ROW_ERRORS: tuple[type[Exception], ...] = (UnicodeError, OverflowError, ValueError,
                                             asyncpg.DataError)


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    delivery_id: str
    event: str
    action: str | None
    installation_id: int | None
    payload: bytes


class _Connection:
    """One pooled connection of the engine, held by the writer and used through its driver.

    SQLAlchemy's per-statement work (a hop to aiosqlite's thread each for begin, execute
    and commit, a round trip each on PostgreSQL, type conversion per row) cost more on the
    hot path than the rows themselves.
    """

    def __init__(self, engine: AsyncEngine, conn: AsyncConnection, driver: Any) -> None:
        self.engine = engine
        self._conn = conn
        self._driver = driver
        self._postgres = engine.dialect.name == "postgresql"
        dialect = engine.dialect
        # Timestamps converted once per batch, exactly as SQLAlchemy would store them.
        processor = deliveries.c.received_at.type.dialect_impl(dialect).bind_processor(dialect)
        self._timestamp: Callable[[dt.datetime], Any] = processor or (lambda value: value)

    @classmethod
    async def open(cls, engine: AsyncEngine) -> _Connection:
        conn = await engine.connect()
        try:
            raw = await conn.get_raw_connection()
            connection = cls(engine, conn, raw.driver_connection)
            if connection._postgres:
                await connection._set_toast_compression()
            return connection
        except BaseException:
            await conn.close()
            raise

    async def _set_toast_compression(self) -> None:
        try:
            await self._driver.execute(POSTGRES_SESSION)
        except asyncpg.PostgresError as exc:
            log.info("payloads stay compressed with pglz: %s", type(exc).__name__)

    async def insert(self, rows: list[DeliveryRow]) -> None:
        """Commit the rows in one transaction, ignoring delivery ids already stored."""
        now = self._timestamp(utcnow())
        if self._postgres:
            await self._driver.executemany(POSTGRES_INSERT, [
                (r.delivery_id, r.event, r.action, r.installation_id, r.payload,
                 hashlib.sha256(r.payload).digest(), now, PENDING) for r in rows])
            return
        # sqlite3 opens the transaction itself before the first INSERT (its default mode).
        await self._driver.executemany(SQLITE_INSERT, [
            (r.delivery_id, r.event, r.action, r.installation_id, r.payload,
             hashlib.sha256(r.payload).digest(), now, PENDING, now) for r in rows])
        await self._driver.commit()

    async def close(self, *, broken: bool) -> None:
        """Give the connection back to the pool, or discard it when it may be broken."""
        if not broken and self._postgres:
            try:  # back in the pool, the session serves everyone
                await self._driver.execute("RESET default_toast_compression")
            except Exception:  # noqa: BLE001 - one that cannot even reset is not reused
                broken = True
        if broken:
            with contextlib.suppress(Exception):
                await self._conn.invalidate()
        with contextlib.suppress(Exception):
            await self._conn.close()


class DeliveryWriter:
    """Stores deliveries; concurrent callers share one transaction (a group commit).

    While one batch commits, the next one gathers, so a busy intake pays one commit (and
    one fsync) for many deliveries instead of one each. One batch at a time: on SQLite
    there is one writer anyway, and on PostgreSQL several smaller batches in flight
    measured slower than one larger one (bench/README.md).
    """

    def __init__(self, engine: AsyncEngine, on_stored: Callable[[], None] | None = None):
        self._engine = engine
        self._on_stored = on_stored
        self._pending: list[tuple[DeliveryRow, asyncio.Future[None]]] = []
        self._committing: list[tuple[DeliveryRow, asyncio.Future[None]]] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._connection: _Connection | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="delivery-writer")

    async def close(self) -> None:
        await tasks.stop(self._task)
        self._task = None
        if self._connection is not None:
            # Stopped mid-commit, the transaction is in an unknown state: do not reuse it.
            await self._connection.close(broken=bool(self._committing))
            self._connection = None
        _fail(self._committing + self._pending, StoreUnavailable("shutting down"))
        self._committing, self._pending = [], []

    async def store(self, row: DeliveryRow) -> None:
        """Return once the delivery (or an earlier one with its id) is committed.

        Raises StoreUnavailable when the database refuses it or has not committed it
        within STORE_TIMEOUT_SECONDS (it may still be committed later).
        """
        if self._task is None:
            raise StoreUnavailable("the delivery writer is not running")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._pending.append((row, future))
        self._wakeup.set()
        # A bare timer, not asyncio.timeout(): this runs for every delivery.
        timer = loop.call_later(STORE_TIMEOUT_SECONDS, _fail, [(row, future)],
                                StoreUnavailable("not committed in time"))
        try:
            # A caller that gives up cancels only its wait: the row is committed all the same.
            await future
        finally:
            timer.cancel()

    async def _loop(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending:
                self._committing = self._pending[:MAX_BATCH]
                del self._pending[:MAX_BATCH]
                await self._commit(self._committing)
                self._committing = []

    async def _discard_connection(self) -> None:
        if self._connection is not None:
            # The next batch starts on a fresh connection (the database may have restarted).
            await self._connection.close(broken=True)
            self._connection = None

    async def _one_by_one(self, batch: list[tuple[DeliveryRow, asyncio.Future[None]]]) -> None:
        stored = False
        for row, future in batch:
            if future.done():
                continue
            try:
                connection = await self._connected()
                await connection.insert([row])
            except _ROW_ERRORS as exc:
                await self._discard_connection()
                log.warning("delivery refused by the database: %s", type(exc).__name__,
                            extra={"delivery_id": row.delivery_id})
                _fail([(row, future)], DeliveryRefused(type(exc).__name__))
            except Exception as exc:  # noqa: BLE001 - the database went away meanwhile
                await self._discard_connection()
                _fail([(row, future)], StoreUnavailable(type(exc).__name__))
            else:
                stored = True
                future.set_result(None)
        if stored and self._on_stored is not None:
            self._on_stored()

    async def _connected(self) -> _Connection:
        # A connection serves the engine it came from, and the engine can be replaced
        # (the tests point the writer at a database that is down, then back).
        if self._connection is not None and self._connection.engine is not self._engine:
            await self._connection.close(broken=False)
            self._connection = None
        if self._connection is None:
            self._connection = await _Connection.open(self._engine)
        return self._connection

    async def _commit(self, batch: list[tuple[DeliveryRow, asyncio.Future[None]]]) -> None:
        try:
            connection = await self._connected()
            await connection.insert([row for row, _ in batch])
        except Exception as exc:  # noqa: BLE001 - any failure must reach every waiter
            log.error("storing %d deliveries failed: %s", len(batch), type(exc).__name__)
            await self._discard_connection()
            if isinstance(exc, _ROW_ERRORS):
                # One row's values may have failed them all: each is tried alone, so only
                # the bad one is refused.
                await self._one_by_one(batch)
                return
            _fail(batch, StoreUnavailable(type(exc).__name__))
            return
        for _, future in batch:
            if not future.done():
                future.set_result(None)
        if self._on_stored is not None:
            self._on_stored()


def _fail(waiters: list[tuple[DeliveryRow, asyncio.Future[None]]], error: Exception) -> None:
    for _, future in waiters:
        if not future.done():
            future.set_exception(error)
