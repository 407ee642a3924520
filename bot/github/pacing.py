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
    future: asyncio.Future[None]


class _Prepaid:
    """Writes a turn reserved in advance, spent by the requests made inside it."""

    def __init__(self, window: WriteWindow, count: int) -> None:
        self.window = window
        self.count = count


_PREPAID: ContextVar[_Prepaid | None] = ContextVar("agentbot_prepaid_writes", default=None)


class WriteWindow:
    """One installation's content-creating requests: when each went, who waits for the next.

    A write goes at once while the last minute and the last hour leave room for it; else it
    waits, and waiters are served by priority, then in arrival order. A granted write counts
    as arriving at GitHub now until its answer is back, and from then on at the time of the
    answer: GitHub counts it when it arrives, which is somewhere in between, so no 60 s at
    GitHub's end sees more than the limit, however late a request goes or slowly it travels.
    A secondary-limit answer from GitHub blocks the whole window until its `retry-after`.
    """

    def __init__(self, limits: WriteLimits, clock: Callable[[], float] = time.monotonic,
                 sleep: Sleep = asyncio.sleep) -> None:
        self.limits = limits
        self._clock = clock
        self._sleep = sleep
        self._sent: deque[float] = deque()  # times of the writes within the last hour
        self._reserved = 0  # granted, and not answered yet (a turn's, or on their way)
        self._blocked_until = 0.0
        self._queue: list[tuple[int, int, _Waiter]] = []
        self._order = itertools.count()
        self._timer: asyncio.Task[None] | None = None

    @property
    def waiting(self) -> int:
        """How many requests wait for their turn."""
        return sum(1 for *_, w in self._queue if not w.future.done())

    def sent_within(self, seconds: float) -> int:
        """Writes answered in the last `seconds`, and those granted and not answered yet."""
        now = self._clock()
        return len(self._sent) - bisect.bisect_right(self._sent, now - seconds) + self._reserved

    def block(self, seconds: float) -> None:
        """GitHub refused a write for its limits: nothing more goes for `seconds`."""
        self._blocked_until = max(self._blocked_until, self._clock() + seconds)
        self._pump()

    async def acquire(self, writes: int = 1, level: Priority | None = None) -> int:
        """Wait until `writes` requests may go; each counts from then on, until `answered`
        (or `give_back` for one that will not be sent). Returns how many were granted."""
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
                self.give_back(writes)  # granted just as it was cancelled
            self._pump()
            raise
        return writes

    def answered(self) -> None:
        """A granted write's answer is back (or it failed on the way): it counts from now."""
        self._reserved -= 1
        self._sent.append(self._clock())
        self._pump()  # a waiter held back by writes on their way may now learn when to go

    def give_back(self, count: int) -> None:
        """Granted writes that will not be sent."""
        self._reserved -= count
        self._pump()

    async def before_write(self) -> None:
        """Called by the client before each content-creating request it sends (and
        `answered` after it): a write its turn took goes at once, any other waits."""
        prepaid = _PREPAID.get()
        if (prepaid is not None and prepaid.window is self and prepaid.count
                and self._blocked_until <= self._clock()):
            prepaid.count -= 1
            return
        await self.acquire()

    @contextlib.asynccontextmanager
    async def turn(self, writes: int, level: Priority) -> AsyncIterator[None]:
        """Wait for room for `writes` requests at `level`, then hold it for the block: its
        requests go without waiting again (what the block does not send is given back).
        Reading what to write only once the turn came keeps a waiting update current."""
        granted = await self.acquire(writes, level)
        prepaid = _Prepaid(self, granted)
        token = _PREPAID.set(prepaid)
        try:
            with priority(level):
                yield
        finally:
            _PREPAID.reset(token)
            if prepaid.count:
                self.give_back(prepaid.count)

    # --- the queue -------------------------------------------------------------------------

    def _delay(self, now: float, writes: int) -> float | None:
        """Seconds until `writes` more requests fit in both windows (0: now; None: not
        before writes on their way are answered or given back)."""
        limits = self.limits
        horizon = now - limits.hour
        while self._sent and self._sent[0] <= horizon:
            self._sent.popleft()
        delay = max(self._blocked_until - now, 0.0)
        sent = len(self._sent)
        # The oldest sent writes must leave a window for `writes` (and the reserved) to fit.
        leave_hour = sent + self._reserved + writes - limits.per_hour
        if leave_hour > sent:
            return None
        if leave_hour > 0:
            delay = max(delay, self._sent[leave_hour - 1] + limits.hour - now)
        in_minute = sent - bisect.bisect_right(self._sent, now - limits.minute)
        leave_minute = in_minute + self._reserved + writes - limits.per_minute
        if leave_minute > in_minute:
            return None
        if leave_minute > 0:
            delay = max(delay, self._sent[sent - in_minute + leave_minute - 1]
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
            if delay is None:
                return  # a reserved write sent or given back pumps again
            if delay > 0:
                self._timer = asyncio.get_running_loop().create_task(
                    self._later(now + delay), name="github-write-window")
                return
            heapq.heappop(self._queue)
            self._reserved += waiter.writes
            waiter.future.set_result(None)

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
