"""Live runs: one poller per process reads new events of the watched runs and fans them out.

However many people watch, the database sees the same three small queries a tick. A viewer
subscribes first and reads what it missed from the database second, then drops from its
queue what the read already covered: so nothing is lost between the two and nothing is
sent twice, whatever `Last-Event-ID` it resumes from.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.store.tables import FINAL_STATES, RunState, run_events, run_usage, runs
from bot.web.transcript import Fragment, render

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0
QUEUE_MAX = 500  # ticks a viewer may be behind; past that it is dropped and resumes
BATCH = 2_000  # events read a tick
RENDERED_MAX = 20_000  # fragments kept rendered, for viewers catching up
# Viewers woken between two turns of the event loop. A tick wakes every viewer of every run
# at once, and each writes to its socket (about 50 µs): 200 viewers held a webhook that came
# in just then for 10 ms (bench/run_pages.py, the p99 of the 202). Woken a slice at a time,
# the intake's reads come in between.
WAKE_SLICE = 16
RENDER_TURN = 0.001  # seconds of rendering between two turns of the event loop


@dataclass(frozen=True)
class Changed:
    """The run's row or usage changed: `payload` is the new header (and with `final`, the
    outcome) as server-sent events, rendered once for every viewer."""

    final: bool
    payload: bytes = b""


# What a viewer's queue holds: the new events of a tick (in order), a change of the run, or
# None for the end of the stream.
Message = tuple[Fragment, ...] | Changed
# The SSE text of a run's header (and outcome, when it ended), given its id and whether so.
Describe = Callable[[int, bool], Awaitable[bytes]]


@dataclass
class _Watched:
    cursor: int  # the newest seq published
    version: tuple[Any, ...] | None = None  # the run's state, update time and usage
    queues: set[asyncio.Queue[Message | None]] = field(default_factory=set)


class Hub:
    """The runs someone watches, polled together; `subscribe` yields their new events."""

    def __init__(self, engine: AsyncEngine, poll_seconds: float = POLL_SECONDS,
                 describe: Describe | None = None) -> None:
        self._engine = engine
        self._describe = describe
        self._poll = poll_seconds
        self._watched: dict[int, _Watched] = {}
        self._rendered: OrderedDict[tuple[int, int], Fragment] = OrderedDict()
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._woken = 0  # viewers woken since the loop last had a turn
        self._ticking = asyncio.Lock()
        self.ticks = 0

    # viewers

    @contextlib.asynccontextmanager
    async def subscribe(self, run_id: int, after: int
                        ) -> AsyncIterator[asyncio.Queue[Message | None]]:
        """A queue of the run's events after `after` (some may repeat what a read finds)."""
        queue: asyncio.Queue[Message | None] = asyncio.Queue(QUEUE_MAX)
        watched = self._watched.get(run_id)
        if watched is None:
            watched = self._watched[run_id] = _Watched(cursor=after)
        else:
            # An earlier cursor: the hub then publishes what this viewer has not seen either.
            watched.cursor = min(watched.cursor, after)
        watched.queues.add(queue)
        self._start()
        try:
            yield queue
        finally:
            watched.queues.discard(queue)
            if not watched.queues and self._watched.get(run_id) is watched:
                del self._watched[run_id]

    async def read(self, run_id: int, after: int, limit: int = 50_000) -> list[Fragment]:
        """The run's stored events after `after`, rendered (from the cache when it can)."""
        async with self._engine.connect() as conn:
            rows = (await conn.execute(
                select(run_events.c.seq, run_events.c.kind, run_events.c.data)
                .where(run_events.c.run_id == run_id, run_events.c.seq > after)
                .order_by(run_events.c.seq).limit(limit))).all()
        fragments = []
        turn = time.perf_counter()
        for row in rows:
            fragments.append(self.fragment(run_id, row.seq, row.kind, row.data))
            turn = await _share_the_loop(turn)
        return fragments

    def fragment(self, run_id: int, seq: int, kind: str, data: Any) -> Fragment:
        key = (run_id, seq)
        found = self._rendered.get(key)
        if found is None:
            found = render(seq, kind, data if isinstance(data, dict) else {})
            self._rendered[key] = found
            if len(self._rendered) > RENDERED_MAX:
                self._rendered.popitem(last=False)
        return found

    # the poller

    def _start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._loop(), name="run-page-hub")
        self._wake.set()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.disconnect()

    def disconnect(self) -> None:
        """End every viewer's stream (shutting down); browsers come back with Last-Event-ID."""
        for watched in self._watched.values():
            for queue in watched.queues:
                _offer(queue, None)

    async def _loop(self) -> None:
        while True:
            if not self._watched:
                self._wake.clear()
                await self._wake.wait()
            try:
                await self.tick()
            except Exception:  # the database may be away for a moment; viewers wait
                log.exception("the run pages could not read new events")
            await asyncio.sleep(self._poll)

    async def tick(self) -> None:
        """Publish what changed in every watched run since the last tick; one tick at a
        time (publishing yields to the loop, and two at once would both see a change)."""
        async with self._ticking:
            await self._tick()

    async def _tick(self) -> None:
        self.ticks += 1
        watched = dict(self._watched)
        if not watched:
            return
        ids = list(watched)
        async with self._engine.connect() as conn:
            # The run rows first: a run seen final has all its events stored already.
            states = {row.id: row for row in (await conn.execute(
                select(runs.c.id, runs.c.state, runs.c.updated_at, runs.c.finished_at)
                .where(runs.c.id.in_(ids)))).all()}
            usage = {row.run_id: (row.n, row.last) for row in (await conn.execute(
                select(run_usage.c.run_id, func.count().label("n"),
                       func.max(run_usage.c.id).label("last"))
                .where(run_usage.c.run_id.in_(ids)).group_by(run_usage.c.run_id))).all()}
            cursors = {run_id: w.cursor for run_id, w in watched.items()}
            rows = (await conn.execute(
                select(run_events.c.run_id, run_events.c.seq, run_events.c.kind,
                       run_events.c.data)
                .where(or_(*(and_(run_events.c.run_id == run_id, run_events.c.seq > cursor)
                             for run_id, cursor in cursors.items())))
                .order_by(run_events.c.run_id, run_events.c.seq).limit(BATCH))).all()
        complete = len(rows) < BATCH
        fresh: dict[int, list[Fragment]] = {}
        turn = time.perf_counter()
        for row in rows:
            entry = self._watched.get(row.run_id)
            if entry is None or row.seq <= entry.cursor:
                continue
            entry.cursor = row.seq
            fresh.setdefault(row.run_id, []).append(
                self.fragment(row.run_id, row.seq, row.kind, row.data))
            turn = await _share_the_loop(turn)
        for run_id, fragments in fresh.items():  # a run's new events reach a viewer at once
            entry = self._watched.get(run_id)
            if entry is not None:
                await self._publish(entry, tuple(fragments))
        for run_id, entry in watched.items():
            state = states.get(run_id)
            if state is None:
                continue
            version = (state.state, state.updated_at, state.finished_at, usage.get(run_id))
            if version == entry.version:
                continue
            final = RunState(state.state) in FINAL_STATES
            if final and not complete:
                continue  # its last events come first, at the next tick
            if entry.version is not None or final:
                payload = await self._describe(run_id, final) if self._describe else b""
                await self._publish(entry, Changed(final, payload))
            entry.version = version

    async def _publish(self, entry: _Watched, message: Message) -> None:
        for queue in list(entry.queues):
            if not _offer(queue, message):
                entry.queues.discard(queue)  # too slow: its stream ends and it resumes
            self._woken += 1
            if self._woken >= WAKE_SLICE:
                self._woken = 0
                await asyncio.sleep(0)  # these write, and what came in is read, first


async def _share_the_loop(turn: float) -> float:
    """Give the event loop a turn once RENDER_TURN has gone by since `turn` (when the last
    turn was given), and say when this turn began. An event with a long output takes a
    quarter of a millisecond to render, and a page opened on a long run renders thousands:
    without a turn between, a webhook arriving then would wait for all of them."""
    now = time.perf_counter()
    if now - turn < RENDER_TURN:
        return turn
    await asyncio.sleep(0)
    return time.perf_counter()


def _offer(queue: asyncio.Queue[Message | None], message: Message | None) -> bool:
    try:
        queue.put_nowait(message)
    except asyncio.QueueFull:
        with contextlib.suppress(asyncio.QueueEmpty):
            while True:
                queue.get_nowait()
        queue.put_nowait(None)  # the end of this stream
        return False
    return True
