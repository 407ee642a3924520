"""A clock tests move by hand, shared by the bot's GitHub client and the fake GitHub."""

from __future__ import annotations

import asyncio
import time


class FakeClock:
    """Seconds since the epoch that only move when told; `sleep` records and moves, at once."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        """Stand-in for asyncio.sleep: remembers the wait, moves the clock, yields once."""
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)
