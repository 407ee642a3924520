"""The Ticker: a pass per tick or per notification, at most one each `min_gap`."""

from __future__ import annotations

import asyncio

from bot.loops import Ticker


class Passes:
    """A tick that records the notifications seen by each pass, and says when there were
    `wanted` passes."""

    def __init__(self, wanted: int) -> None:
        self.seen: list[int] = []
        self.notified = 0
        self.wanted = wanted
        self.enough = asyncio.Event()

    async def tick(self) -> None:
        self.seen.append(self.notified)
        if len(self.seen) >= self.wanted:
            self.enough.set()


async def _notify(ticker: Ticker, passes: Passes, times: int) -> None:
    await asyncio.sleep(0.01)  # its first pass, at start
    for _ in range(times):
        passes.notified += 1
        ticker.notify()
        await asyncio.sleep(0.003)
    await asyncio.sleep(0.02)


async def test_a_burst_of_notifications_collapses_into_a_pass_per_gap() -> None:
    passes = Passes(wanted=2)
    ticker = Ticker("test", passes.tick, seconds=60.0, min_gap=1.0)
    ticker.start()
    try:
        await _notify(ticker, passes, 100)
        # 100 notifications over 0.3 s or more: the first pass and at most one more
        # (a slower machine makes fewer passes, never more).
        assert 1 <= len(passes.seen) <= 2
        # ...and the last notification is not lost: a pass follows once the gap is over.
        async with asyncio.timeout(5):
            await passes.enough.wait()
        assert passes.seen[-1] >= 1
    finally:
        await ticker.close()


async def test_without_a_gap_each_notification_gets_its_pass() -> None:
    passes = Passes(wanted=1)
    ticker = Ticker("test", passes.tick, seconds=60.0)
    ticker.start()
    try:
        await _notify(ticker, passes, 30)
        assert len(passes.seen) > 20  # about one per notification: what the gap saves
    finally:
        await ticker.close()


async def test_a_failed_pass_does_not_stop_the_loop() -> None:
    second = asyncio.Event()
    calls = 0

    async def tick() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a database blip")
        second.set()

    ticker = Ticker("test", tick, seconds=60.0)
    ticker.start()
    try:
        await asyncio.sleep(0.01)
        ticker.notify()
        async with asyncio.timeout(5):
            await second.wait()
        assert ticker.health() is None
    finally:
        await ticker.close()
