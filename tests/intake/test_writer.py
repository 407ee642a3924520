"""The delivery writer's rows, dedupe and failures, and dispatch yielding to the intake."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import sqlite3
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from gidgethub import routing, sansio
from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.intake.inbox import Inbox, InboxOptions
from bot.intake.writer import DeliveryRefused, DeliveryRow, DeliveryWriter, StoreUnavailable
from bot.store.tables import DeliveryStatus, deliveries, utcnow

BODY = b'{"action":"labeled","issue":{"number":5},"repository":{"id":1}}'


def _row(delivery_id: str, installation_id: int | None = 7) -> DeliveryRow:
    # Each body its own, as GitHub's are: a body seen before is a replay and is not stored.
    body = BODY[:-1] + b',"delivery":"%s"}' % delivery_id.encode()
    return DeliveryRow(delivery_id, "issues", "labeled", installation_id, body)


async def _rows(engine: AsyncEngine) -> dict[str, dict[str, Any]]:
    async with engine.connect() as conn:
        result = await conn.execute(select(deliveries).order_by(deliveries.c.id))
        return {r.delivery_id: r._asdict() for r in result}


async def test_rows_are_what_sqlalchemy_would_store(engine: AsyncEngine) -> None:
    now = utcnow()
    async with engine.begin() as conn:  # the reference: the table's own types do the work
        await conn.execute(insert(deliveries).values(
            delivery_id="reference", event="issues", action="labeled", installation_id=7,
            payload=BODY, received_at=now, status=DeliveryStatus.PENDING.value, attempts=0,
            next_attempt_at=now, done_handlers=[]))
    writer = DeliveryWriter(engine)
    writer.start()
    try:
        await asyncio.gather(writer.store(_row("one")), writer.store(_row("two", None)))
    finally:
        await writer.close()
    rows = await _rows(engine)
    assert set(rows) == {"reference", "one", "two"}
    assert rows["one"]["received_at"] == rows["one"]["next_attempt_at"]
    assert rows["two"]["installation_id"] is None
    ours, reference = dict(rows["one"]), dict(rows["reference"])
    assert ours["payload"] == _row("one").payload
    assert ours["payload_sha256"] == hashlib.sha256(ours["payload"]).digest()
    for column in ("id", "delivery_id", "received_at", "next_attempt_at", "payload",
                   "payload_sha256"):
        ours.pop(column), reference.pop(column)
    assert ours == reference
    assert ours["done_handlers"] == []


async def test_a_delivery_id_is_stored_once_within_and_across_batches(
        engine: AsyncEngine) -> None:
    writer = DeliveryWriter(engine)
    writer.start()
    try:
        # Queued before the writer runs, so they share one batch, duplicate included.
        await asyncio.gather(*(writer.store(_row(d)) for d in ("a", "b", "a", "c", "b")))
        await writer.store(_row("a"))  # a redelivery later on: accepted, not stored again
    finally:
        await writer.close()
    assert list(await _rows(engine)) == ["a", "b", "c"]


async def test_a_body_seen_before_under_another_id_is_not_stored_again(
        engine: AsyncEngine) -> None:
    writer = DeliveryWriter(engine)
    writer.start()
    body = _row("first").payload
    try:
        await asyncio.gather(*(writer.store(DeliveryRow(d, "issues", "labeled", 7, body))
                               for d in ("first", "replay-1")))
        await writer.store(DeliveryRow("replay-2", "issue_comment", "created", 7, body))
    finally:
        await writer.close()
    assert list(await _rows(engine)) == ["first"]


async def test_a_row_the_database_cannot_take_is_refused_alone(engine: AsyncEngine) -> None:
    writer = DeliveryWriter(engine)
    writer.start()
    odd = DeliveryRow("odd\udcff", "issues", "labeled", 7, b'{"odd": 1}')
    huge = DeliveryRow("huge", "issues", "labeled", 2**64, b'{"huge": 1}')
    try:
        results = await asyncio.gather(
            *(writer.store(_row(f"good-{n}")) for n in range(20)), writer.store(odd),
            writer.store(huge), return_exceptions=True)
    finally:
        await writer.close()
    assert results[:20] == [None] * 20
    assert [type(r) for r in results[20:]] == [DeliveryRefused, DeliveryRefused]
    assert sorted(await _rows(engine)) == sorted(f"good-{n}" for n in range(20))


async def test_a_batch_is_one_transaction(engine: AsyncEngine) -> None:
    writer = DeliveryWriter(engine)
    writer.start()
    broken = DeliveryRow("broken", None, None, None, BODY)  # type: ignore[arg-type]
    try:
        # Queued together, so they share one batch; `event` may not be NULL.
        results = await asyncio.gather(writer.store(_row("good")), writer.store(broken),
                                       return_exceptions=True)
        assert [type(r) for r in results] == [StoreUnavailable, StoreUnavailable]
        await writer.store(_row("later"))  # the writer goes on with the next batch
    finally:
        await writer.close()
    assert list(await _rows(engine)) == ["later"]


async def test_postgres_compresses_payloads_with_lz4(engine: AsyncEngine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("TOAST compression is PostgreSQL's")
    big = DeliveryRow("big", "issues", "labeled", 7, b'{"body": "%s"}' % (b"agentbot " * 2000))
    writer = DeliveryWriter(engine)
    writer.start()
    try:
        await writer.store(big)
    finally:
        await writer.close()
    async with engine.connect() as conn:
        method = (await conn.execute(text(
            "SELECT pg_column_compression(payload) FROM deliveries"))).scalar_one()
    assert method == "lz4"
    assert (await _rows(engine))["big"]["payload"] == big.payload


async def test_a_database_that_hangs_is_refused_in_time(
        engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("bot.intake.writer.STORE_TIMEOUT_SECONDS", 0.3)
    writer = DeliveryWriter(engine)
    writer.start()
    try:
        async with _write_locked(engine):
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                await writer.store(_row("held"))
            assert time.monotonic() - started < 2
        # The lock is gone: the held row is committed after all, and the next one too.
        await writer.store(_row("next"))
    finally:
        await writer.close()
    assert list(await _rows(engine)) == ["held", "next"]


@contextlib.asynccontextmanager
async def _write_locked(engine: AsyncEngine) -> AsyncIterator[None]:
    """Another session holds the lock every insert into deliveries waits for."""
    if engine.dialect.name == "postgresql":
        async with engine.connect() as conn:
            await conn.execute(text("LOCK TABLE deliveries IN ACCESS EXCLUSIVE MODE"))
            yield
            await conn.rollback()
        return
    other = sqlite3.connect(str(engine.url.database), isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        yield
        other.execute("ROLLBACK")
    finally:
        other.close()


async def test_a_lost_connection_fails_its_batch_and_the_next_one_reconnects(
        engine: AsyncEngine) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("a server-side disconnect needs PostgreSQL")
    writer = DeliveryWriter(engine)
    writer.start()
    try:
        await writer.store(_row("before"))
        async with engine.begin() as conn:  # the server drops the writer's connection
            killed = (await conn.execute(text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"))).scalar_one()
        assert killed >= 1
        with pytest.raises(StoreUnavailable):
            await writer.store(_row("lost"))
        await writer.store(_row("after"))
    finally:
        await writer.close()
    assert list(await _rows(engine)) == ["before", "after"]


async def test_a_stopped_writer_refuses_deliveries(engine: AsyncEngine) -> None:
    writer = DeliveryWriter(engine)
    with pytest.raises(StoreUnavailable):
        await writer.store(_row("never"))
    writer.start()
    await writer.close()
    with pytest.raises(StoreUnavailable):
        await writer.store(_row("never"))
    assert await _rows(engine) == {}


class Seen:
    """A router whose one handler notes when each delivery was dispatched."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.dispatched = asyncio.Event()
        self.router = routing.Router()
        self.router.add(self.handle, "issues")

    async def handle(self, event: sansio.Event, ctx: Any) -> None:
        self.at[event.delivery_id] = time.monotonic()
        self.dispatched.set()


async def _store(engine: AsyncEngine, *rows: DeliveryRow) -> None:
    writer = DeliveryWriter(engine)
    writer.start()
    try:
        await asyncio.gather(*(writer.store(r) for r in rows))
    finally:
        await writer.close()


async def test_dispatch_waits_while_the_intake_is_busy_but_not_past_its_floor(
        engine: AsyncEngine) -> None:
    await _store(engine, _row("busy"))
    seen = Seen()
    options = InboxOptions(intake_quiet_seconds=0.2, max_yield_seconds=0.6, poll_seconds=0.05)
    inbox = Inbox(engine, seen.router, context=None, options=options)
    inbox.notify()
    started = time.monotonic()
    inbox.start()
    try:
        # The intake keeps storing (a commit every 50 ms) for longer than the floor.
        while time.monotonic() - started < 1.5 and not seen.dispatched.is_set():
            inbox.notify()
            await asyncio.sleep(0.05)
        async with asyncio.timeout(5):
            await seen.dispatched.wait()
    finally:
        await inbox.close()
    waited = seen.at["busy"] - started
    assert 0.55 <= waited < 1.4  # after the floor, while the intake was still busy


async def test_dispatch_starts_at_once_once_the_intake_is_quiet(engine: AsyncEngine) -> None:
    await _store(engine, _row("quiet"))
    seen = Seen()
    options = InboxOptions(intake_quiet_seconds=0.05, max_yield_seconds=10)
    inbox = Inbox(engine, seen.router, context=None, options=options)
    inbox.notify()  # the last delivery of a burst
    started = time.monotonic()
    inbox.start()
    try:
        async with asyncio.timeout(5):
            await seen.dispatched.wait()
    finally:
        await inbox.close()
    assert seen.at["quiet"] - started < 1.0
