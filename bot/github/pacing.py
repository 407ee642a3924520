"""GitHub's content-creation limits, kept by the client: each installation's writes are paced
under so many a minute and an hour, in priority order.

GitHub's documentation ("Rate limits for the REST API", secondary rate limits) says: in general
no more than 80 content-generating requests a minute and 500 an hour, some endpoints lower; it
counts POST, PATCH, PUT and DELETE as the costly kind (5 points against 1 for a read). It does
not say whom the content limits are counted for; its primary limits for an App are counted per
installation (each installation's token has its own allowance), so the budget here is one per
installation. The App's own calls (installation tokens, webhook redeliveries) create no
content and are not paced. The budget is per process: several replicas each keep their own.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import enum
import heapq
import itertools
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass

Sleep = Callable[[float], Awaitable[None]]
WRITE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})


class Priority(enum.IntEnum):
    """Who waits for a write; the lower goes first when an installation's budget is short."""

    ACK = 0  # a person just asked: the status comment, a reply to a command
    RESULT = 1  # the work itself: the published PR and the run's final report
    PROGRESS = 2  # what a running run is doing now: may wait, and is coalesced meanwhile


_PRIORITY: ContextVar[Priority] = ContextVar("agentbot_write_priority", default=Priority.ACK)


def creates_content(method: str, path: str) -> bool:
    """Whether GitHub counts the request against the content-creation limits (as far as the
    bot can tell: every write made with an installation's token, not the App's own calls)."""
    if method.upper() not in WRITE_METHODS:
        return False
    path = path.split("?", 1)[0]
    # The App's own endpoints (under /app), and the revocation of a token.
    return path.split("/")[1:2] != ["app"] and path != "/installation/token"


@contextlib.contextmanager
def priority(level: Priority) -> Iterator[None]:
    """Writes made inside the block (by this task and those it starts) wait as `level`."""
    token = _PRIORITY.set(level)
    try:
        yield
    finally:
        _PRIORITY.reset(token)


def current_priority() -> Priority:
    return _PRIORITY.get()


@dataclass(frozen=True)
class WriteLimits:
    """How many content-creating requests one installation sends per window. GitHub allows
    80 a minute and 500 an hour; the defaults keep a margin for clocks that disagree."""

    per_minute: int = 72
    per_hour: int = 480
    minute: float = 60.0  # the windows' lengths, shortened by tests
    hour: float = 3600.0


@dataclass
class _Waiter:
    level: Priority
    writes: int
    future: asyncio.Future[list[float]]


class _Prepaid:
    """Writes a turn took in advance, spent by the requests made inside it."""

    def __init__(self, window: WriteWindow, times: list[float]) -> None:
        self.window = window
        self.times = times


_PREPAID: ContextVar[_Prepaid | None] = ContextVar("agentbot_prepaid_writes", default=None)


class WriteWindow:
    """One installation's content-creating requests: when each went, who waits for the next.

    A write goes at once while the last minute and the last hour leave room for it; else it
    waits, and waiters are served by priority, then in arrival order. A secondary-limit
    answer from GitHub blocks the whole window until GitHub's `retry-after` has passed.
    """

    def __init__(self, limits: WriteLimits, clock: Callable[[], float] = time.monotonic,
                 sleep: Sleep = asyncio.sleep) -> None:
        self.limits = limits
        self._clock = clock
        self._sleep = sleep
        self._sent: deque[float] = deque()  # times of the writes within the last hour
        self._blocked_until = 0.0
        self._queue: list[tuple[int, int, _Waiter]] = []
        self._order = itertools.count()
        self._timer: asyncio.Task[None] | None = None

    @property
    def waiting(self) -> int:
        """How many requests wait for their turn."""
        return sum(1 for *_, w in self._queue if not w.future.done())

    def sent_within(self, seconds: float) -> int:
        now = self._clock()
        return len(self._sent) - bisect.bisect_right(self._sent, now - seconds)

    def block(self, seconds: float) -> None:
        """GitHub refused a write for its limits: nothing more goes for `seconds`."""
        self._blocked_until = max(self._blocked_until, self._clock() + seconds)
        self._pump()

    async def acquire(self, writes: int = 1, level: Priority | None = None) -> list[float]:
        """Wait until `writes` requests may go, and count them as sent now."""
        writes = max(1, min(writes, self.limits.per_minute, self.limits.per_hour))
        loop = asyncio.get_running_loop()
        waiter = _Waiter(current_priority() if level is None else level, writes,
                         loop.create_future())
        heapq.heappush(self._queue, (int(waiter.level), next(self._order), waiter))
        self._pump()
        try:
            await waiter.future
        except BaseException:
            if waiter.future.done() and not waiter.future.cancelled():
                self.refund(waiter.future.result())  # granted just as it was cancelled
            self._pump()
            raise
        return waiter.future.result()

    def refund(self, times: list[float]) -> None:
        """Give back writes taken but not sent."""
        for at in times:
            with contextlib.suppress(ValueError):
                self._sent.remove(at)
        self._pump()

    async def before_write(self) -> None:
        """Called by the client before each content-creating request it sends."""
        prepaid = _PREPAID.get()
        if (prepaid is not None and prepaid.window is self and prepaid.times
                and self._blocked_until <= self._clock()):
            prepaid.times.pop()
            return
        await self.acquire()

    @contextlib.asynccontextmanager
    async def turn(self, writes: int, level: Priority) -> AsyncIterator[None]:
        """Wait for room for `writes` requests at `level`, then hold it for the block: its
        requests go without waiting again (what the block does not send is given back).
        Reading what to write only once the turn came keeps a waiting update current."""
        times = await self.acquire(writes, level)
        prepaid = _Prepaid(self, list(times))
        token = _PREPAID.set(prepaid)
        try:
            with priority(level):
                yield
        finally:
            _PREPAID.reset(token)
            if prepaid.times:
                self.refund(prepaid.times)

    # --- the queue -------------------------------------------------------------------------

    def _delay(self, now: float, writes: int) -> float:
        """Seconds until `writes` more requests fit in both windows (0: now)."""
        limits = self.limits
        horizon = now - limits.hour
        while self._sent and self._sent[0] <= horizon:
            self._sent.popleft()
        delay = max(self._blocked_until - now, 0.0)
        sent = len(self._sent)
        if sent + writes > limits.per_hour:
            delay = max(delay, self._sent[sent + writes - limits.per_hour - 1] + limits.hour - now)
        in_minute = sent - bisect.bisect_right(self._sent, now - limits.minute)
        if in_minute + writes > limits.per_minute:
            delay = max(delay, self._sent[sent - in_minute + (in_minute + writes
                                                               - limits.per_minute) - 1]
                        + limits.minute - now)
        return delay

    def _pump(self) -> None:
        """Let waiters go, best first, while there is room; else wake up when there will be."""
        if self._timer is not None and self._timer is not asyncio.current_task():
            self._timer.cancel()
        self._timer = None
        while self._queue:
            waiter = self._queue[0][2]
            if waiter.future.done():
                heapq.heappop(self._queue)
                continue
            now = self._clock()
            delay = self._delay(now, waiter.writes)
            if delay > 0:
                self._timer = asyncio.get_running_loop().create_task(
                    self._later(now + delay), name="github-write-window")
                return
            heapq.heappop(self._queue)
            times = [now] * waiter.writes
            self._sent.extend(times)
            waiter.future.set_result(times)


    async def _later(self, at: float) -> None:
        await self._sleep(max(at - self._clock(), 0.0))
        self._pump()


class WriteBudget:
    """The process's write windows, one per installation, made when first used."""

    def __init__(self, limits: WriteLimits | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Sleep = asyncio.sleep) -> None:
        self.limits = limits or WriteLimits()
        self._clock = clock
        self._sleep = sleep
        self._windows: dict[int, WriteWindow] = {}

    def window(self, installation_id: int) -> WriteWindow:
        window = self._windows.get(installation_id)
        if window is None:
            window = self._windows[installation_id] = WriteWindow(self.limits, self._clock,
                                                                  self._sleep)
        return window

    def waiting(self) -> dict[int, int]:
        """Requests waiting for their turn, by installation (for metrics)."""
        return {key: n for key, window in self._windows.items() if (n := window.waiting)}
