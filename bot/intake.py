"""Group-committed, deduplicating writes of webhook deliveries."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine

from bot import tasks
from bot.store import DeliveryStatus, deliveries, utcnow

log = logging.getLogger(__name__)

MAX_BATCH = 512


class StoreUnavailable(Exception):
    """The database did not take the delivery; the sender should try again later."""


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    delivery_id: str
    event: str
    action: str | None
    installation_id: int | None
    payload: bytes


def insert_ignoring_duplicates(engine: AsyncEngine) -> Any:
    """`INSERT ... ON CONFLICT (delivery_id) DO NOTHING` in the engine's dialect."""
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    return dialect.insert(deliveries).on_conflict_do_nothing(index_elements=["delivery_id"])


class DeliveryWriter:
    """Stores deliveries; concurrent callers share one transaction (a group commit).

    While one batch commits, the next one gathers, so a busy intake pays one fsync
    for many deliveries instead of one each.
    """

    def __init__(self, engine: AsyncEngine, on_stored: Callable[[], None] | None = None):
        self._engine = engine
        self._on_stored = on_stored
        self._pending: list[tuple[DeliveryRow, asyncio.Future[None]]] = []
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stmt = insert_ignoring_duplicates(engine)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="delivery-writer")

    async def close(self) -> None:
        await tasks.stop(self._task)
        self._task = None
        for _, future in self._pending:
            if not future.done():
                future.set_exception(StoreUnavailable("shutting down"))
        self._pending.clear()

    async def store(self, row: DeliveryRow) -> None:
        """Return once the delivery (or an earlier one with its id) is committed."""
        if self._task is None:
            raise StoreUnavailable("the delivery writer is not running")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((row, future))
        self._wakeup.set()
        await asyncio.shield(future)

    async def _loop(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending:
                batch = self._pending[:MAX_BATCH]
                del self._pending[:MAX_BATCH]
                await self._commit(batch)

    async def _commit(self, batch: list[tuple[DeliveryRow, asyncio.Future[None]]]) -> None:
        now = utcnow()
        rows: list[dict[str, Any]] = [
            {
                "delivery_id": row.delivery_id,
                "event": row.event,
                "action": row.action,
                "installation_id": row.installation_id,
                "payload": row.payload,
                "received_at": now,
                "status": DeliveryStatus.PENDING.value,
                "attempts": 0,
                "next_attempt_at": now,
                "done_handlers": [],
            }
            for row, _ in batch
        ]
        try:
            async with self._engine.begin() as conn:
                await conn.execute(self._stmt, rows)
        except Exception as exc:  # noqa: BLE001 - any failure must reach every waiter
            log.error("storing %d deliveries failed: %s", len(batch), type(exc).__name__)
            error = StoreUnavailable(type(exc).__name__)
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for _, future in batch:
            if not future.done():
                future.set_result(None)
        if self._on_stored is not None:
            self._on_stored()
