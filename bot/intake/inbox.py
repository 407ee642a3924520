"""The dispatch worker: drains stored deliveries through the router, at least once."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from gidgethub import routing, sansio
from sqlalchemy import and_, delete, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot import tasks
from bot.github.client import RateLimited
from bot.logs import log_context
from bot.store.tables import DeliveryStatus, deliveries, utcnow

log = logging.getLogger(__name__)

Handler = Callable[..., Awaitable[Any]]

# How a handler put off by a rate limit is noted in `last_error`, followed by the seconds.
DEFERRED = "rate limited; retry in s="


def handler_name(handler: Handler) -> str:
    """A stable name for a handler, kept in `done_handlers` across restarts."""
    return f"{handler.__module__}.{handler.__qualname__}"


def _field(data: Any, key: str) -> Any:
    """`data[key]` where data is an object, else None: a payload's shape is not trusted."""
    return data.get(key) if isinstance(data, dict) else None


def issue_key(data: dict[str, Any]) -> str:
    """Deliveries about one issue or PR are processed in order; others run in parallel."""
    repo = _field(_field(data, "repository"), "id")
    for key in ("issue", "pull_request"):
        number = _field(_field(data, key), "number")
        if number is not None:
            return f"{repo}#{number}"
    external_id = _field(_field(data, "check_run"), "external_id")
    if external_id:
        return f"{repo}:run:{external_id}"
    return f"{repo}:{id(data)}"


@dataclass(frozen=True)
class InboxOptions:
    batch_size: int = 20
    concurrency: int = 8
    lease_seconds: int = 120
    max_attempts: int = 5
    poll_seconds: float = 1.0
    # While the intake stored a delivery this recently, dispatch waits (GitHub waits on
    # the intake; nobody waits on dispatch to the millisecond), but never longer than
    # max_yield_seconds at a time, so that it keeps moving under load that never pauses.
    intake_quiet_seconds: float = 0.05
    # 0.1 s: a burst's first triggers wait that long, not a second (burst bench: N=100,
    # 202 -> Job p50/p99 1.95/2.42 s with 1 s, 1.18/1.68 s with 0.1 s).
    max_yield_seconds: float = 0.1
    backoff_base_seconds: float = 2.0
    backoff_max_seconds: float = 300.0
    retention: dt.timedelta = dt.timedelta(days=7)


class Inbox:
    """Claims pending deliveries with a lease and dispatches each handler in isolation."""

    def __init__(
        self,
        engine: AsyncEngine,
        router: routing.Router,
        context: Any,
        options: InboxOptions | None = None,
    ) -> None:
        self._engine = engine
        self._router = router
        self._context = context
        self.options = options or InboxOptions()
        self.owner = uuid.uuid4().hex
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}
        self._limit = asyncio.Semaphore(self.options.concurrency)
        self.alive_at: dt.datetime | None = None
        self._stored_at = -float("inf")  # time.monotonic() of the intake's last commit
        self._finishing: list[tuple[int, dict[str, Any], asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()

    def notify(self) -> None:
        """A delivery was stored: look now instead of at the next poll."""
        self._stored_at = time.monotonic()
        self._wakeup.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="inbox")

    async def close(self) -> None:
        await tasks.stop(self._task)
        self._task = None
        if self._flusher is not None:  # what was finished is written before it stops
            with contextlib.suppress(Exception):
                await self._flusher

    async def release_abandoned(self) -> int:
        """Return every in-flight delivery to pending (one process owns an SQLite file)."""
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(deliveries)
                .where(deliveries.c.status == DeliveryStatus.PROCESSING)
                .values(status=DeliveryStatus.PENDING, lease_owner=None, lease_until=None)
            )
        return result.rowcount or 0

    async def _loop(self) -> None:
        """Keep up to batch_size deliveries claimed: claim more once half of them are done,
        instead of waiting for a whole batch, whose slowest delivery held every slot (a
        burst went at the pace of each batch's slowest GitHub answer)."""
        last_cleanup = utcnow() - dt.timedelta(days=1)
        try:
            while True:
                self.alive_at = utcnow()
                self._wakeup.clear()  # a notify or a finish from now on wakes the wait below
                room = self.options.batch_size - len(self._running)
                try:
                    if room * 2 >= self.options.batch_size:
                        await self._yield_to_intake()
                        room = self.options.batch_size - len(self._running)
                        for row in await self._claim(room):
                            self._spawn(row)
                    if self.alive_at - last_cleanup > dt.timedelta(hours=1):
                        await self.forget_old()
                        last_cleanup = self.alive_at
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("inbox iteration failed; retrying")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), self.options.poll_seconds)
        finally:  # stopped: what was claimed stops too (its lease brings it back)
            running = list(self._running)
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)

    def _spawn(self, row: Any) -> None:
        task = asyncio.create_task(self._process(row), name=f"delivery-{row.id}")
        self._running.add(task)
        task.add_done_callback(self._processed)

    def _processed(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("delivery task failed", exc_info=task.exception())
        if len(self._running) * 2 <= self.options.batch_size:
            self._wakeup.set()

    async def _yield_to_intake(self) -> None:
        """Wait while the intake is busy, up to max_yield_seconds."""
        give_up = time.monotonic() + self.options.max_yield_seconds
        while True:
            now = time.monotonic()
            quiet_at = self._stored_at + self.options.intake_quiet_seconds
            if now >= quiet_at or now >= give_up:
                return
            self.alive_at = utcnow()
            await asyncio.sleep(min(quiet_at, give_up) - now)

    async def drain_once(self) -> int:
        """Claim one batch and process it; returns how many deliveries were claimed (the
        worker's loop keeps claiming as deliveries finish; this is for one-shot callers)."""
        batch = await self._claim()
        if batch:
            await asyncio.gather(*(self._process(row) for row in batch))
        return len(batch)

    async def _claim(self, limit: int | None = None) -> list[Any]:
        now = utcnow()
        limit = self.options.batch_size if limit is None else limit
        # Leases run out only when a process died: rare, few, and older than anything
        # pending, so they come first. Then the longest due, walking ix_deliveries_status_next
        # in its order (ties in insertion order) and stopping at the batch size: a query
        # sorting every due row by id sorted the whole backlog, on SQLite while holding the
        # write lock the intake waits for.
        expired = and_(deliveries.c.status == DeliveryStatus.PROCESSING,
                       deliveries.c.lease_until < now)
        due = and_(deliveries.c.status == DeliveryStatus.PENDING,
                   deliveries.c.next_attempt_at <= now)
        rows: list[Any] = []
        async with self._engine.begin() as conn:
            for where, order in ((expired, deliveries.c.id),
                                 (due, deliveries.c.next_attempt_at)):
                wanted = limit - len(rows)
                if wanted <= 0:
                    break
                rows += (await conn.execute(self._claiming(now, where, order, wanted))).all()
        return sorted(rows, key=lambda r: r.id)

    def _claiming(self, now: dt.datetime, where: Any, order: Any, limit: int) -> Any:
        ids = (
            select(deliveries.c.id)
            .where(where)
            .order_by(order)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
        return (
            update(deliveries)
            .where(deliveries.c.id.in_(ids))
            .values(
                status=DeliveryStatus.PROCESSING,
                lease_owner=self.owner,
                lease_until=now + dt.timedelta(seconds=self.options.lease_seconds),
                attempts=deliveries.c.attempts + 1,
            )
            .returning(deliveries.c.id, deliveries.c.delivery_id, deliveries.c.event,
                       deliveries.c.payload, deliveries.c.attempts,
                       deliveries.c.done_handlers)
        )

    async def _process(self, row: Any) -> None:
        try:
            data = orjson.loads(row.payload)
        except orjson.JSONDecodeError:  # intake checked it; a corrupt row is not retried
            await self._finish(row, set(), {"payload": "stored payload is not JSON"})
            return
        event = sansio.Event(data, event=row.event, delivery_id=row.delivery_id)
        key = issue_key(data)
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock, self._limit:
                installation_id = _field(_field(data, "installation"), "id")
                with log_context(delivery_id=row.delivery_id,
                                 installation_id=installation_id
                                 if isinstance(installation_id, int) else None):
                    done = set(row.done_handlers or ())
                    try:
                        done, errors = await self.dispatch(event, done)
                    except Exception as exc:  # noqa: BLE001 - a payload no route can take
                        # Routing itself failed (an `action` that is a list, say): an attempt
                        # like any other, so the delivery ends failed instead of coming back.
                        log.warning("delivery could not be routed: %s", type(exc).__name__)
                        errors = {"dispatch": f"{type(exc).__name__}: {exc}"[:2000]}
                    await self._finish(row, done, errors)
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    async def dispatch(self, event: sansio.Event, done: set[str]) -> tuple[set[str], dict]:
        """Run every handler not yet done; one failing does not stop the others."""
        errors: dict[str, str] = {}
        for handler in sorted(self._router.fetch(event), key=handler_name):
            name = handler_name(handler)
            if name in done:
                continue
            try:
                await handler(event, ctx=self._context)
            except asyncio.CancelledError:
                raise
            except RateLimited as exc:
                # Not the handler's fault: wait for the reset instead of spending an attempt.
                log.warning("handler %s deferred by a GitHub rate limit", name,
                            extra={"event": event.event, "handler": name})
                errors[name] = f"{DEFERRED}{exc.delay():.0f}"
            except Exception as exc:
                log.exception("handler %s failed", name,
                              extra={"event": event.event, "handler": name})
                errors[name] = f"{type(exc).__name__}: {exc}"[:2000]
            else:
                done.add(name)
        return done, errors

    async def _finish(self, row: Any, done: set[str], errors: dict[str, str]) -> None:
        now = utcnow()
        values: dict[str, Any] = {"done_handlers": sorted(done), "lease_owner": None,
                                  "lease_until": None}
        deferred = [float(e[len(DEFERRED):]) for e in errors.values() if e.startswith(DEFERRED)]
        if not errors:
            values.update(status=DeliveryStatus.DONE, processed_at=now, last_error=None)
        elif len(deferred) == len(errors):
            values.update(status=DeliveryStatus.PENDING, attempts=row.attempts - 1,
                          next_attempt_at=now + dt.timedelta(seconds=max(deferred) + 1),
                          last_error=orjson.dumps(errors).decode())
        elif row.attempts >= self.options.max_attempts:
            values.update(status=DeliveryStatus.FAILED, processed_at=now,
                          last_error=orjson.dumps(errors).decode())
            log.error("delivery failed after %d attempts", row.attempts,
                      extra={"delivery_id": row.delivery_id, "errors": errors})
        else:
            delay = min(self.options.backoff_max_seconds,
                        self.options.backoff_base_seconds * 2 ** (row.attempts - 1))
            delay *= random.uniform(0.8, 1.2)
            values.update(status=DeliveryStatus.PENDING,
                          next_attempt_at=now + dt.timedelta(seconds=delay),
                          last_error=orjson.dumps(errors).decode())
        # Finishes that come together are committed together (one transaction for all that
        # queued while the previous one was written): under a burst the database, not the
        # handlers, would otherwise set the pace. Each waits until its own is committed.
        done_future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._finishing.append((row.id, values, done_future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_finished(), name="inbox-finish")
        await asyncio.shield(done_future)

    async def _flush_finished(self) -> None:
        while self._finishing:
            batch, self._finishing = self._finishing, []
            try:
                async with self._engine.begin() as conn:
                    for row_id, values, _ in batch:
                        # Only the lease holder may finish: a delivery whose lease ran out
                        # meanwhile belongs to whoever claimed it next.
                        await conn.execute(
                            update(deliveries)
                            .where(deliveries.c.id == row_id,
                                   deliveries.c.lease_owner == self.owner)
                            .values(**values))
            except Exception as exc:  # noqa: BLE001 - each waiter gets it (the next pass retries)
                for _, _, waiter in batch:
                    if not waiter.done():
                        waiter.set_exception(exc)
                continue
            for _, _, waiter in batch:
                if not waiter.done():
                    waiter.set_result(None)

    async def forget_old(self) -> int:
        """Delete processed deliveries past the retention (GitHub keeps 3 days anyway)."""
        cutoff = utcnow() - self.options.retention
        async with self._engine.begin() as conn:
            result = await conn.execute(
                delete(deliveries).where(
                    deliveries.c.status.in_([DeliveryStatus.DONE, DeliveryStatus.FAILED]),
                    deliveries.c.processed_at < cutoff,
                )
            )
        return result.rowcount or 0
