"""The redelivery reconciler against the fake GitHub's delivery log, on every database."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from typing import Any

import pytest
from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.github.client import GitHubApp
from bot.intake.redeliver import Redeliverer, RedeliverOptions
from bot.store.tables import deliveries, redeliveries, utcnow
from tests.fakes.github import FakeGitHub
from tests.fakes.github_clock import FakeClock
from tests.fakes.github_state import HookDelivery

LIST = "GET /app/hook/deliveries"
ATTEMPT = "POST /app/hook/deliveries/{delivery_id}/attempts"


class Clock:
    """The reconciler's clock, moved by hand."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> dt.datetime:
        return self.now


class Recorder:
    """The reconciler's outcomes and waits, as the metric and asyncio.sleep would see them."""

    def __init__(self) -> None:
        self.outcomes: list[str] = []
        self.sleeps: list[float] = []

    def outcome(self, outcome: str) -> None:
        self.outcomes.append(outcome)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        await asyncio.sleep(0)


def make(engine: AsyncEngine, github_app: GitHubApp, recorder: Recorder,
         clock: Any = utcnow, **options: Any) -> Redeliverer:
    return Redeliverer(engine, github_app.app_client, RedeliverOptions(**options),
                       on_outcome=recorder.outcome, clock=clock, sleep=recorder.sleep)


def failed(fake: FakeGitHub, status_code: int = 502, **fields: Any) -> HookDelivery:
    return fake.add_hook_delivery("issues", "labeled", status_code=status_code,
                                  payload={"action": "labeled"}, **fields)


async def in_inbox(engine: AsyncEngine, guid: str) -> None:
    """A delivery another replica stored (GitHub may still log it failed: it timed out)."""
    now = utcnow()
    async with engine.begin() as conn:
        await conn.execute(insert(deliveries).values(
            delivery_id=guid, event="issues", action="labeled", payload=b"{}",
            received_at=now, next_attempt_at=now))


def asked(fake: FakeGitHub) -> list[int]:
    return [int(r.path.split("/")[-2]) for r in fake.calls(ATTEMPT)]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


async def test_only_failed_deliveries_missing_from_the_inbox_are_asked_for_once(
        engine: AsyncEngine, github_app: GitHubApp, fake_github: FakeGitHub,
        recorder: Recorder, caplog: pytest.LogCaptureFixture) -> None:
    lost = failed(fake_github)
    stored = failed(fake_github, status_code=0)  # timed out for GitHub, stored by a replica
    await in_inbox(engine, stored.guid)
    fake_github.add_hook_delivery("issues", "opened", status_code=202)
    healed = failed(fake_github)  # failed, then someone redelivered it by hand, with success
    fake_github.add_hook_delivery("issues", "labeled", guid=healed.guid, status_code=202)
    failed(fake_github, status_code=400)  # refused by the bot itself: the same bytes again
    reconciler = make(engine, github_app, recorder)
    caplog.set_level(logging.INFO, "bot.intake.redeliver")

    assert await reconciler.reconcile() == 1
    assert asked(fake_github) == [lost.id]
    assert recorder.outcomes == ["requested"]
    line = next(r.getMessage() for r in caplog.records if "asked GitHub" in r.getMessage())
    assert lost.guid in line and "issues.labeled" in line and "502" in line
    assert "bearer" not in caplog.text.lower()
    # The attempt GitHub makes for it failed too, but we asked moments ago: not again yet.
    await fake_github.settle_webhooks()
    assert await reconciler.reconcile() == 0
    assert asked(fake_github) == [lost.id]


async def test_pages_are_followed_by_their_cursor(engine: AsyncEngine, github_app: GitHubApp,
                                                   fake_github: FakeGitHub,
                                                   recorder: Recorder) -> None:
    oldest = failed(fake_github)
    for _ in range(230):
        fake_github.add_hook_delivery("issues", "opened", status_code=202)

    assert await make(engine, github_app, recorder).reconcile() == 1
    listed = fake_github.calls(LIST)
    assert len(listed) == 3
    assert listed[0].query == {"per_page": "100"}
    assert "cursor" in listed[1].query and "cursor" in listed[2].query
    assert asked(fake_github) == [oldest.id]


async def test_nothing_past_the_redelivery_window_is_asked_for_or_listed(
        engine: AsyncEngine, github_app: GitHubApp, fake_github: FakeGitHub,
        recorder: Recorder) -> None:
    now = fake_github.state.now()
    for _ in range(150):
        failed(fake_github, delivered_at=now - 4 * 86400)
    recent = failed(fake_github, delivered_at=now - 2 * 86400)

    assert await make(engine, github_app, recorder).reconcile() == 1
    assert asked(fake_github) == [recent.id]
    assert len(fake_github.calls(LIST)) == 1  # the first page reached the window's end


async def test_rate_and_cap_per_pass(engine: AsyncEngine, github_app: GitHubApp,
                                     fake_github: FakeGitHub, recorder: Recorder) -> None:
    lost = [failed(fake_github) for _ in range(7)]
    reconciler = make(engine, github_app, recorder, per_pass=5, per_second=4.0)

    assert await reconciler.reconcile() == 5
    assert asked(fake_github) == [d.id for d in lost[:5]]  # the oldest first
    assert recorder.sleeps == [0.25] * 4
    assert await reconciler.reconcile() == 2
    assert asked(fake_github)[5:] == [d.id for d in lost[5:]]


async def test_a_delivery_that_keeps_failing_is_given_up(
        engine: AsyncEngine, github_app: GitHubApp, fake_github: FakeGitHub,
        recorder: Recorder, fake_clock: FakeClock) -> None:
    lost = failed(fake_github)  # nobody listens: every attempt GitHub makes fails too
    clock = Clock()
    reconciler = make(engine, github_app, recorder, clock, max_tries=3)
    for _ in range(5):
        await reconciler.reconcile()
        await fake_github.settle_webhooks()
        clock.now += dt.timedelta(minutes=11)
        fake_clock.advance(660)

    assert len(asked(fake_github)) == 3
    assert recorder.outcomes == ["requested"] * 3 + ["gave_up"]
    assert len(fake_github.hook_attempts(lost.guid)) == 4
    async with engine.connect() as conn:
        row = (await conn.execute(select(redeliveries))).one()
    assert row.guid == lost.guid and row.tries == 3 and row.gave_up_at is not None


async def test_a_github_error_on_the_list_is_logged_and_retried_next_pass(
        engine: AsyncEngine, github_app: GitHubApp, fake_github: FakeGitHub,
        recorder: Recorder, caplog: pytest.LogCaptureFixture) -> None:
    lost = failed(fake_github)
    fake_github.fail_next("GET", "/app/hook/deliveries", 502, times=4)  # past the client's
    reconciler = make(engine, github_app, recorder)                     # own retries

    assert await reconciler.reconcile() == 0
    assert "could not list the App's deliveries (502" in caplog.text
    assert asked(fake_github) == []
    assert await reconciler.reconcile() == 1
    assert asked(fake_github) == [lost.id]


async def test_a_refused_redelivery_is_counted_and_tried_again_later(
        engine: AsyncEngine, github_app: GitHubApp, fake_github: FakeGitHub,
        recorder: Recorder) -> None:
    lost = failed(fake_github)
    fake_github.fail_next("POST", "/app/hook/deliveries/{delivery_id}/attempts", 422)
    clock = Clock()
    reconciler = make(engine, github_app, recorder, clock)

    assert await reconciler.reconcile() == 0
    assert recorder.outcomes == ["refused"]
    clock.now += dt.timedelta(minutes=11)
    assert await reconciler.reconcile() == 1
    assert asked(fake_github) == [lost.id, lost.id]


async def test_one_replica_reconciles_at_a_time(engine: AsyncEngine, github_app: GitHubApp,
                                                fake_github: FakeGitHub,
                                                recorder: Recorder) -> None:
    lost = failed(fake_github)
    first, second = make(engine, github_app, recorder), make(engine, github_app, recorder)

    done = await asyncio.gather(first.reconcile(), second.reconcile())
    assert sorted(done) == [0, 1]
    assert len(fake_github.calls(LIST)) == 1 and asked(fake_github) == [lost.id]
    holder, other = (first, second) if done[0] else (second, first)
    assert await other.reconcile() == 0 and len(fake_github.calls(LIST)) == 1
    assert await holder.reconcile() == 0 and len(fake_github.calls(LIST)) == 2  # renewed
    await holder.close()  # a replica that stops hands the lease over at once
    assert await other.reconcile() == 0 and len(fake_github.calls(LIST)) == 3
    await other.close()


async def test_a_loop_that_waits_longer_than_five_minutes_is_not_stuck(
        engine: AsyncEngine, github_app: GitHubApp, fake_github: FakeGitHub,
        recorder: Recorder) -> None:
    reconciler = make(engine, github_app, recorder, interval=600.0)
    reconciler.start()
    try:
        assert reconciler.health() is None
        reconciler.ticker.alive_at = utcnow() - dt.timedelta(minutes=12)
        assert reconciler.health() is None  # between two passes 10 minutes apart
        reconciler.ticker.alive_at = utcnow() - dt.timedelta(minutes=20)
        assert reconciler.health() == "the redelivery reconciler is stuck"
    finally:
        await reconciler.close()
    assert reconciler.health() == "the redelivery reconciler is not running"
