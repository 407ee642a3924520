"""The dispatch worker: at least once, isolated handlers, bounded retries with backoff."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from gidgethub import routing, sansio
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.intake.inbox import Inbox, InboxOptions, handler_name
from bot.intake.writer import DeliveryRow, DeliveryWriter
from bot.store.tables import deliveries, utcnow

FAST = InboxOptions(backoff_base_seconds=0.0, backoff_max_seconds=0.0, max_attempts=3)


class Calls:
    """Handlers that count what they saw, one of them failing on demand."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []
        self.failures_left = 0
        self.router = routing.Router()
        self.router.add(self.ok, "issues")
        self.router.add(self.flaky, "issues")

    async def ok(self, event: sansio.Event, ctx: Any) -> None:
        self.seen.append(("ok", event.delivery_id))

    async def flaky(self, event: sansio.Event, ctx: Any) -> None:
        self.seen.append(("flaky", event.delivery_id))
        if self.failures_left:
            self.failures_left -= 1
            raise RuntimeError("GitHub said 502")


async def store(engine: AsyncEngine, *rows: DeliveryRow) -> None:
    writer = DeliveryWriter(engine)
    writer.start()
    try:
        for row in rows:
            await writer.store(row)
    finally:
        await writer.close()


def row(delivery_id: str, event: str = "issues", **data: Any) -> DeliveryRow:
    # Each body its own, as GitHub's are: a body seen before is a replay and is not stored.
    body = {"action": "opened", "repository": {"id": 1}, "issue": {"number": 5},
            "delivery": delivery_id, **data}
    return DeliveryRow(delivery_id, event, "opened", None, json.dumps(body).encode())


async def status_of(engine: AsyncEngine, delivery_id: str) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(
            select(deliveries).where(deliveries.c.delivery_id == delivery_id))).one()


async def test_a_stored_delivery_survives_a_process_that_died_before_processing(
        engine: AsyncEngine) -> None:
    # Process one: answered 202 (stored) and was killed before its worker ran.
    await store(engine, row("d-1"))
    # Process two, on the same database, finds and processes it.
    calls = Calls()
    inbox = Inbox(engine, calls.router, context=None, options=FAST)
    assert await inbox.drain_once() == 1
    assert sorted(calls.seen) == [("flaky", "d-1"), ("ok", "d-1")]
    assert (await status_of(engine, "d-1")).status == "done"
    assert await inbox.drain_once() == 0  # nothing is processed twice


async def test_a_delivery_claimed_by_a_dead_process_is_taken_again(engine: AsyncEngine) -> None:
    await store(engine, row("d-2"))
    dead = Inbox(engine, routing.Router(), context=None, options=FAST)
    claimed = await dead._claim()  # noqa: SLF001 - claimed, then the process died
    assert len(claimed) == 1
    calls = Calls()
    successor = Inbox(engine, calls.router, context=None, options=FAST)
    assert await successor.drain_once() == 0  # the dead process's lease still holds
    # A restart on SQLite releases everything at once; elsewhere the lease runs out.
    if engine.dialect.name == "sqlite":
        assert await successor.release_abandoned() == 1
    else:
        async with engine.begin() as conn:
            await conn.execute(update(deliveries).values(
                lease_until=utcnow() - dt.timedelta(seconds=1)))
    assert await successor.drain_once() == 1
    assert len(calls.seen) == 2
    assert (await status_of(engine, "d-2")).status == "done"


async def test_a_failing_handler_does_not_stop_the_others_and_is_retried(
        engine: AsyncEngine) -> None:
    await store(engine, row("d-3"))
    calls = Calls()
    calls.failures_left = 1
    inbox = Inbox(engine, calls.router, context=None, options=FAST)
    await inbox.drain_once()
    first = await status_of(engine, "d-3")
    assert first.status == "pending" and first.attempts == 1
    assert handler_name(calls.ok) in first.done_handlers
    assert "GitHub said 502" in first.last_error
    assert sorted(calls.seen) == [("flaky", "d-3"), ("ok", "d-3")]
    await inbox.drain_once()
    # The retry ran only the handler that had failed.
    assert sorted(calls.seen) == [("flaky", "d-3"), ("flaky", "d-3"), ("ok", "d-3")]
    final = await status_of(engine, "d-3")
    assert final.status == "done" and final.last_error is None


async def test_retries_back_off(engine: AsyncEngine) -> None:
    await store(engine, row("d-4"))
    calls = Calls()
    calls.failures_left = 10
    inbox = Inbox(engine, calls.router, context=None,
                  options=InboxOptions(backoff_base_seconds=60, max_attempts=3))
    before = utcnow()
    await inbox.drain_once()
    pending = await status_of(engine, "d-4")
    next_at = pending.next_attempt_at
    if next_at.tzinfo is None:  # SQLite hands datetimes back naive
        next_at = next_at.replace(tzinfo=dt.UTC)
    assert next_at - before >= dt.timedelta(seconds=45)
    assert await inbox.drain_once() == 0  # not due yet


async def test_a_handler_that_keeps_failing_is_marked_failed_with_its_error(
        engine: AsyncEngine, caplog: pytest.LogCaptureFixture) -> None:
    await store(engine, row("d-5"))
    calls = Calls()
    calls.failures_left = 100
    inbox = Inbox(engine, calls.router, context=None, options=FAST)
    for _ in range(5):
        await inbox.drain_once()
    final = await status_of(engine, "d-5")
    assert final.status == "failed"
    assert final.attempts == FAST.max_attempts
    assert json.loads(final.last_error) == {handler_name(calls.flaky): "RuntimeError: "
                                            "GitHub said 502"}
    assert calls.seen.count(("flaky", "d-5")) == FAST.max_attempts
    assert calls.seen.count(("ok", "d-5")) == 1
    failures = [r for r in caplog.records if r.getMessage().startswith("handler ")]
    assert failures and all(getattr(r, "delivery_id", None) == "d-5" for r in failures)


async def test_events_without_handlers_are_done_at_once(engine: AsyncEngine) -> None:
    await store(engine, row("d-6", event="push"))
    inbox = Inbox(engine, Calls().router, context=None, options=FAST)
    await inbox.drain_once()
    assert (await status_of(engine, "d-6")).status == "done"


async def test_deliveries_about_one_issue_run_in_order(engine: AsyncEngine) -> None:
    order: list[str] = []
    router = routing.Router()

    async def record(event: sansio.Event, ctx: Any) -> None:
        order.append(event.delivery_id)

    router.add(record, "issues")
    await store(engine, *(row(f"o-{i}") for i in range(10)))
    await Inbox(engine, router, context=None, options=FAST).drain_once()
    assert order == [f"o-{i}" for i in range(10)]


async def test_old_processed_deliveries_are_forgotten(engine: AsyncEngine) -> None:
    await store(engine, row("old"), row("new"))
    inbox = Inbox(engine, Calls().router, context=None, options=FAST)
    await inbox.drain_once()
    async with engine.begin() as conn:
        await conn.execute(update(deliveries).where(deliveries.c.delivery_id == "old")
                           .values(processed_at=utcnow() - dt.timedelta(days=8)))
    assert await inbox.forget_old() == 1
    async with engine.connect() as conn:
        left = (await conn.execute(select(deliveries.c.delivery_id))).scalars().all()
    assert left == ["new"]


async def test_a_rate_limited_handler_waits_for_the_reset_without_spending_attempts(
        engine: AsyncEngine) -> None:
    from bot.github.client import RateLimited

    router = routing.Router()
    limited = [True]

    async def calls_github(event: sansio.Event, ctx: Any) -> None:
        if limited[0]:
            raise RateLimited(utcnow().timestamp() + 120, 403, "API rate limit exceeded")

    router.add(calls_github, "issues")
    await store(engine, row("rl"))
    inbox = Inbox(engine, router, context=None, options=FAST)
    for _ in range(FAST.max_attempts + 2):
        await inbox.drain_once()
        async with engine.begin() as conn:  # pretend the reset time has come
            await conn.execute(update(deliveries).values(next_attempt_at=utcnow()))
    deferred = await status_of(engine, "rl")
    assert deferred.status == "pending" and deferred.attempts == 0
    assert "rate limited" in deferred.last_error
    limited[0] = False
    await inbox.drain_once()
    assert (await status_of(engine, "rl")).status == "done"


async def test_finishes_that_come_together_are_committed_together(engine: AsyncEngine) -> None:
    """A burst: the deliveries of a batch are marked done in a few transactions, not one
    each (the database, not the handlers, set the pace under a burst)."""
    from sqlalchemy import event as sa_event

    ids = [f"burst-{n}" for n in range(12)]
    await store(engine, *(row(i, issue={"number": n}) for n, i in enumerate(ids)))
    calls = Calls()
    inbox = Inbox(engine, calls.router, context=None,
                  options=InboxOptions(batch_size=12, concurrency=12))
    finishing: list[int] = []

    def on_execute(conn: Any, clauseelement: Any, *args: Any) -> None:
        if str(clauseelement).startswith("UPDATE deliveries") and \
                clauseelement.compile().params.get("status") == "done":
            finishing.append(id(conn.get_transaction()))

    sa_event.listen(engine.sync_engine, "before_execute", on_execute)
    try:
        assert await inbox.drain_once() == 12
    finally:
        sa_event.remove(engine.sync_engine, "before_execute", on_execute)
    assert [(await status_of(engine, i)).status for i in ids] == ["done"] * 12
    assert len(finishing) == 12 and len(set(finishing)) < 12  # shared transactions


async def test_the_worker_claims_more_while_a_slow_delivery_is_still_running(
        engine: AsyncEngine) -> None:
    """A burst goes at the pace of its deliveries, not of each batch's slowest one: with
    batches of 4, one delivery waiting on GitHub does not keep the other 11 waiting."""
    import asyncio

    release = asyncio.Event()
    done: list[str] = []
    router = routing.Router()

    async def handle(event: sansio.Event, ctx: Any) -> None:
        if event.delivery_id == "slow-0":
            await release.wait()
        done.append(event.delivery_id)

    router.add(handle, "issues")
    ids = [f"slow-{n}" for n in range(12)]
    await store(engine, *(row(i, issue={"number": n}) for n, i in enumerate(ids)))
    inbox = Inbox(engine, router, context=None,
                  options=InboxOptions(batch_size=4, concurrency=4, poll_seconds=0.05))
    inbox.start()
    try:
        async with asyncio.timeout(10):
            while len(done) < 11:  # noqa: ASYNC110 - handlers in the worker's tasks
                await asyncio.sleep(0.01)
        assert "slow-0" not in done and sorted(done) == sorted(ids[1:])
        assert (await status_of(engine, "slow-0")).status == "processing"
        release.set()
        async with asyncio.timeout(10):
            while (await status_of(engine, "slow-0")).status != "done":  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    finally:
        await inbox.close()
    assert [(await status_of(engine, i)).status for i in ids] == ["done"] * 12


async def test_the_worker_keeps_one_issue_in_order_across_claims(engine: AsyncEngine) -> None:
    """Deliveries of one issue claimed at different times (the first still running when the
    next is claimed) are handled in the order they arrived, one at a time."""
    import asyncio

    order: list[str] = []
    inside = 0
    most_inside = 0
    router = routing.Router()

    async def handle(event: sansio.Event, ctx: Any) -> None:
        nonlocal inside, most_inside
        inside += 1
        most_inside = max(most_inside, inside)
        await asyncio.sleep(0.01)
        order.append(event.delivery_id)
        inside -= 1

    router.add(handle, "issues")
    inbox = Inbox(engine, router, context=None,
                  options=InboxOptions(batch_size=2, concurrency=2, poll_seconds=0.05))
    inbox.start()
    try:
        for n in range(8):  # arriving while earlier ones of the issue still run
            await store(engine, row(f"seq-{n}"))
            inbox.notify()
            await asyncio.sleep(0.003)
        async with asyncio.timeout(10):
            while len(order) < 8:  # noqa: ASYNC110 - handlers in the worker's tasks
                await asyncio.sleep(0.01)
    finally:
        await inbox.close()
    assert order == [f"seq-{n}" for n in range(8)]
    assert most_inside == 1
