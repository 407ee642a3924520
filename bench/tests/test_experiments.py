"""The prototype writer stores exactly what agentbot's DeliveryWriter stores."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bench import databases, experiments
from bot import migrate, store
from bot.intake import DeliveryRow, DeliveryWriter


@contextlib.asynccontextmanager
async def _engine(kind: str, tmp_path: Path) -> AsyncIterator[Any]:
    if kind == "sqlite":
        engine = store.create_engine(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
        await migrate.upgrade(engine)
        try:
            yield engine
        finally:
            await engine.dispose()
        return
    try:
        stack = contextlib.ExitStack()
        database = await asyncio.to_thread(stack.enter_context, databases.postgres())
    except OSError:
        pytest.skip("no PostgreSQL on 127.0.0.1:5432")
    engine = store.create_engine(database.url)
    try:
        await migrate.upgrade(engine)
        yield engine
    finally:
        await engine.dispose()
        await asyncio.to_thread(stack.close)


def _row(delivery_id: str, installation_id: int | None = 7) -> DeliveryRow:
    return DeliveryRow(delivery_id, "issues", "labeled", installation_id, b'{"action":"x"}')


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
async def test_raw_writer_rows_match_the_delivery_writers(kind: str, tmp_path: Path) -> None:
    async with _engine(kind, tmp_path) as engine:
        stock = DeliveryWriter(engine)
        stock.start()
        await stock.store(_row("stock"))
        await stock.close()
        raw = experiments.RawWriter(engine)
        try:
            await raw.write([_row("raw"), _row("raw-2", None)])
            await raw.write([_row("raw")])  # a redelivery: ignored, not an error
        finally:
            await raw.close()
        async with engine.connect() as conn:
            rows = {r.delivery_id: r._asdict() for r in
                    await conn.execute(select(store.deliveries))}
    assert set(rows) == {"stock", "raw", "raw-2"}
    assert rows["raw"]["received_at"] == rows["raw"]["next_attempt_at"]
    ours, theirs = dict(rows["raw"]), dict(rows["stock"])
    for column in ("id", "delivery_id", "received_at", "next_attempt_at"):
        assert type(ours.pop(column)) is type(theirs.pop(column))
    assert ours == theirs
    assert rows["raw-2"]["installation_id"] is None
