"""Expired transcripts: the deletion pass, and the page that says the transcript expired."""

from __future__ import annotations

import asyncio
import datetime as dt
import html
from collections.abc import Callable

from sqlalchemy import func, select, update

from bot.config.settings import Settings
from bot.store.tables import RunState, run_events, runs, utcnow
from bot.web.pages import EXPIRED_TEXT
from bot.web.retention import Retention
from tests.web.harness import OPEN, Pages


async def events_of(pages: Pages, run_id: int) -> int:
    async with pages.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).where(
            run_events.c.run_id == run_id))).scalar_one())


async def test_the_pass_deletes_only_the_events_of_runs_that_ended_long_ago(
        pages: Pages) -> None:
    old_id, recent_id, running_id = [await pages.add_run(OPEN) for _ in range(3)]
    for run_id in (old_id, recent_id, running_id):
        await pages.post_events(run_id, [
            {"seq": n, "kind": "message", "data": {"text": f"step {n}"}} for n in range(1, 4)])
    await pages.finish(old_id, RunState.FAILED, error="it broke")
    await pages.finish(recent_id, RunState.SUCCEEDED)
    async with pages.engine.begin() as conn:
        await conn.execute(update(runs).where(runs.c.id == old_id).values(
            finished_at=utcnow() - dt.timedelta(days=31)))
        await conn.execute(update(runs).where(runs.c.id == recent_id).values(
            finished_at=utcnow() - dt.timedelta(days=29)))
    retention = Retention(pages.engine, 30 * 86400)
    assert await retention.delete_expired() == 3
    assert await events_of(pages, old_id) == 0
    assert await events_of(pages, recent_id) == 3
    assert await events_of(pages, running_id) == 3
    assert await retention.delete_expired() == 0  # twice is harmless

    await pages.sign_in("octocat")
    assert pages.client is not None
    text = await (await pages.client.get(f"/runs/{old_id}")).text()
    ended = (utcnow() - dt.timedelta(days=31)).strftime("%Y-%m-%d")
    assert html.escape(EXPIRED_TEXT.format(retention="30 days", ended=ended)) in text
    assert "it broke" in text  # the outcome stays
    recent_text = await (await pages.client.get(f"/runs/{recent_id}")).text()
    assert "has expired" not in recent_text and "step 3" in recent_text


def test_retention_reads_days_hours_and_defaults_to_thirty_days(
        make_settings: Callable[..., Settings]) -> None:
    assert make_settings().event_retention == 30 * 86400
    assert make_settings(event_retention="7d").event_retention == 7 * 86400
    assert make_settings(event_retention="12h").event_retention == 12 * 3600


async def test_the_pass_waits_one_period_after_start(pages: Pages) -> None:
    run_id = await pages.add_run(OPEN)
    await pages.post_events(run_id, [{"seq": 1, "kind": "message", "data": {"text": "x"}}])
    await pages.finish(run_id, RunState.FAILED)
    async with pages.engine.begin() as conn:
        await conn.execute(update(runs).where(runs.c.id == run_id).values(
            finished_at=utcnow() - dt.timedelta(days=40)))
    retention = Retention(pages.engine, 30 * 86400, every=0.05)
    retention.start()
    try:
        assert await events_of(pages, run_id) == 1  # nothing at start
        for _ in range(100):
            if await events_of(pages, run_id) == 0:
                break
            await asyncio.sleep(0.05)
        assert await events_of(pages, run_id) == 0  # one period later, deleted
        assert retention.health() is None
    finally:
        await retention.close()
