"""Background passes: a loop that ticks (or wakes early), and per-item retry backoff."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable, Hashable

from bot.store.tables import utcnow

log = logging.getLogger(__name__)

STUCK_AFTER = dt.timedelta(minutes=5)


class Ticker:
    """Runs `tick` every `seconds`, at once after `notify`, surviving a failed pass."""

    def __init__(self, name: str, tick: Callable[[], Awaitable[None]], seconds: float,
                 stuck_after: dt.timedelta = STUCK_AFTER, min_gap: float = 0.0) -> None:
        self.name = name
        self.seconds = seconds
        # At least this long from one pass's start to the next's, however often notified:
        # the notifications of a burst collapse into one pass each `min_gap`.
        self.min_gap = min_gap
        self.stuck_after = stuck_after  # since the last pass ended; longer than `seconds`
        self._tick = tick
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.alive_at: dt.datetime | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=self.name)

    def notify(self) -> None:
        """Something changed: pass now instead of at the next tick."""
        self._wake.set()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def health(self) -> str | None:
        """None while the loop runs and passes, else what is wrong."""
        if self._task is None or self._task.done():
            return f"the {self.name} is not running"
        if self.alive_at is not None and utcnow() - self.alive_at > self.stuck_after:
            return f"the {self.name} is stuck"
        return None

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            began = time.monotonic()
            try:
                await self._tick()
            except Exception:  # one bad pass (a database blip) must not stop it for good
                log.exception("the %s's pass failed; trying again", self.name)
            self.alive_at = utcnow()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.seconds)
            if (rest := began + self.min_gap - time.monotonic()) > 0:
                await asyncio.sleep(rest)


class Backoff:
    """Per-item failure counts and the time each item may be tried again."""

    def __init__(self, base: float, factor: float, limit: float,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.base, self.factor, self.limit = base, factor, limit
        self._monotonic = monotonic
        self._failures: dict[Hashable, tuple[int, float]] = {}

    def due(self, key: Hashable) -> bool:
        return self._failures.get(key, (0, 0.0))[1] <= self._monotonic()

    def failed(self, key: Hashable, at_least: float = 0.0) -> tuple[int, float]:
        """Count a failure; returns the count so far and the delay before the next try."""
        count = self._failures.get(key, (0, 0.0))[0] + 1
        delay = max(min(self.base * self.factor ** (count - 1), self.limit), at_least)
        self._failures[key] = (count, self._monotonic() + delay)
        return count, delay

    def forget(self, key: Hashable) -> None:
        """A success (or giving up) starts the count again."""
        self._failures.pop(key, None)
