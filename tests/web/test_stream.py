"""The live stream's hub: one poller for every viewer, and a resume with no gap or repeat."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.runs.ledger import Created, NewRun, create_run, transition
from bot.store.tables import RunState, run_events, utcnow
from bot.web.stream import Changed, Hub
from bot.web.transcript import Fragment, sse


async def a_run(engine: AsyncEngine) -> int:
    outcome = await create_run(engine, NewRun(
        installation_id=7, repo_id=1, repo_full_name="octo-org/widgets",
        clone_url="https://github.com/octo-org/widgets.git", number=1, is_pull_request=False,
        base_ref="main", trigger="label", sender_login="octocat", sender_id=1,
        delivery_id=str(uuid.uuid4()), agent="claude", timeout_seconds=600))
    assert isinstance(outcome, Created)
    await transition(engine, outcome.run_id, RunState.STARTING, "test")
    await transition(engine, outcome.run_id, RunState.RUNNING, "test")
    return outcome.run_id


async def store(engine: AsyncEngine, run_id: int, *seqs: int) -> None:
    async with engine.begin() as conn:
        await conn.execute(insert(run_events), [
            {"run_id": run_id, "seq": s, "ts": utcnow(), "kind": "message",
             "data": {"text": f"m{s}"}} for s in seqs])


async def follow(hub: Hub, run_id: int, after: int, queue: asyncio.Queue[Any]) -> list[int]:
    """What a viewer sends: the read after `after`, then its queue past what it sent."""
    sent = [f.seq for f in await hub.read(run_id, after)]
    return sent + queued_past(queue, sent[-1] if sent else after)


def queued_past(queue: asyncio.Queue[Any], last: int) -> list[int]:
    """The events the queue holds past `last`, as a viewer sends them (a tick's new events
    of a run come as one tuple)."""
    sent = []
    while not queue.empty():
        message = queue.get_nowait()
        if isinstance(message, tuple):
            for fragment in message:
                assert isinstance(fragment, Fragment)
                if fragment.seq > last:
                    sent.append(fragment.seq)
                    last = fragment.seq
    return sent


async def test_events_stored_between_subscribing_and_reading_come_once(
        engine: AsyncEngine) -> None:
    run_id = await a_run(engine)
    await store(engine, run_id, 1, 2, 3)
    hub = Hub(engine, poll_seconds=3600)  # ticks by hand
    try:
        async with hub.subscribe(run_id, after=1) as queue:
            await store(engine, run_id, 4)  # after subscribing, before the viewer reads
            await hub.tick()  # the hub publishes 2, 3 and 4: the read finds them too
            await store(engine, run_id, 5)
            sent = await follow(hub, run_id, 1, queue)
            await hub.tick()
            await store(engine, run_id, 6)
            await hub.tick()
            sent += queued_past(queue, sent[-1])
        assert sent == [2, 3, 4, 5, 6]
    finally:
        await hub.close()


async def test_a_second_viewer_further_back_still_gets_everything(engine: AsyncEngine) -> None:
    run_id = await a_run(engine)
    await store(engine, run_id, *range(1, 11))
    hub = Hub(engine, poll_seconds=3600)
    try:
        async with hub.subscribe(run_id, after=10) as ahead:
            await hub.tick()
            async with hub.subscribe(run_id, after=3) as behind:
                await store(engine, run_id, 11)
                await hub.tick()
                assert await follow(hub, run_id, 3, behind) == list(range(4, 12))
            assert queued_past(ahead, 10) == [11]
    finally:
        await hub.close()


async def test_the_run_ending_is_published_after_its_last_events(engine: AsyncEngine) -> None:
    run_id = await a_run(engine)
    hub = Hub(engine, poll_seconds=3600)
    try:
        async with hub.subscribe(run_id, after=0) as queue:
            await hub.tick()  # the first look records the run as it is
            await store(engine, run_id, 1)
            await transition(engine, run_id, RunState.SUCCEEDED, "done")
            await hub.tick()
            messages = [queue.get_nowait() for _ in range(queue.qsize())]
        assert [type(m).__name__ for m in messages] == ["tuple", "Changed"]
        assert [f.seq for f in messages[0]] == [1]
        assert messages[-1] == Changed(final=True)
    finally:
        await hub.close()


async def test_many_viewers_cost_the_same_queries_and_share_one_rendering(
        engine: AsyncEngine) -> None:
    run_id = await a_run(engine)
    hub = Hub(engine, poll_seconds=3600)
    try:
        async with contextlib_all(hub, run_id, 50) as queues:
            await store(engine, run_id, 1, 2)
            await hub.tick()
            firsts = [q.get_nowait() for q in queues]
        assert all(f is firsts[0] for f in firsts)  # rendered once, the same object for all
        assert [f.seq for f in firsts[0]] == [1, 2]  # a tick's events in one message
        fragment = firsts[0][0]
        assert fragment.event is fragment.event  # encoded once, for every viewer
        assert fragment.event == sse(fragment.html, "ev", 1)
        assert fragment.event.startswith(b"id: 1\nevent: ev\ndata: ")
    finally:
        await hub.close()


class contextlib_all:  # noqa: N801 - reads as the context manager it is
    """`n` viewers of one run at once."""

    def __init__(self, hub: Hub, run_id: int, n: int) -> None:
        self._managers = [hub.subscribe(run_id, 0) for _ in range(n)]

    async def __aenter__(self) -> list[asyncio.Queue[Any]]:
        return [await m.__aenter__() for m in self._managers]

    async def __aexit__(self, *exc: object) -> None:
        for manager in self._managers:
            await manager.__aexit__(None, None, None)


async def test_a_viewer_too_far_behind_is_ended_not_buffered(engine: AsyncEngine) -> None:
    from bot.web import stream

    run_id = await a_run(engine)
    hub = Hub(engine, poll_seconds=3600)
    saved = stream.QUEUE_MAX
    stream.QUEUE_MAX = 3
    try:
        async with hub.subscribe(run_id, 0) as queue:
            for seq in range(1, 6):  # five ticks with news: one message each
                await store(engine, run_id, seq)
                await hub.tick()
            drained = [queue.get_nowait() for _ in range(queue.qsize())]
        assert drained == [None]  # its stream ends; the browser resumes from the database
    finally:
        stream.QUEUE_MAX = saved
        await hub.close()


async def test_a_change_of_the_run_is_described_once_for_all_viewers(
        engine: AsyncEngine) -> None:
    run_id = await a_run(engine)
    described: list[tuple[int, bool]] = []

    async def describe(changed: int, final: bool) -> bytes:
        described.append((changed, final))
        return b"event: run\ndata: header\n\n"

    hub = Hub(engine, poll_seconds=3600, describe=describe)
    try:
        async with contextlib_all(hub, run_id, 30) as queues:
            await hub.tick()  # the first look: nothing to tell yet
            await transition(engine, run_id, RunState.SUCCEEDED, "done")
            await hub.tick()
            changes = [q.get_nowait() for q in queues]
        assert described == [(run_id, True)]
        assert all(c == Changed(True, b"event: run\ndata: header\n\n") for c in changes)
    finally:
        await hub.close()


async def test_a_tick_wakes_many_viewers_a_slice_at_a_time(engine: AsyncEngine) -> None:
    """200 viewers are not all woken in one turn of the event loop: other work (a webhook
    arriving) gets turns while they are, at most WAKE_SLICE viewers apart."""
    from bot.web.stream import WAKE_SLICE

    run_id = await a_run(engine)
    hub = Hub(engine, poll_seconds=3600)
    try:
        async with contextlib_all(hub, run_id, 200) as queues:
            await store(engine, run_id, 1)
            seen: list[int] = []

            async def other_work() -> None:  # what the intake would do meanwhile
                # Until every viewer has it: the hub's own loop ticks once as it starts,
                # and either tick may be the one that publishes.
                while (woken := sum(not q.empty() for q in queues)) < len(queues):
                    seen.append(woken)
                    await asyncio.sleep(0)

            async with asyncio.timeout(10):
                await asyncio.gather(hub.tick(), other_work())
            assert all(q.qsize() == 1 for q in queues)  # every viewer got it, once
        woken_between = sorted({n for n in seen if 0 < n < 200})
        assert len(woken_between) >= 200 // WAKE_SLICE - 2  # turns came in between
        steps = [b - a for a, b in zip([0, *woken_between], woken_between, strict=False)]
        assert max(steps) <= WAKE_SLICE
    finally:
        await hub.close()


async def test_rendering_many_events_gives_other_work_turns(
        engine: AsyncEngine, monkeypatch: Any) -> None:
    """A page opened on a long run renders thousands of events (a long output takes a
    quarter of a millisecond): the hub gives the loop a turn between renders, so a webhook
    arriving meanwhile is not held until all are done. Here a turn after every render."""
    from bot.web import stream

    run_id = await a_run(engine)
    await store(engine, run_id, *range(1, 101))
    hub = Hub(engine, poll_seconds=3600)
    turns = 0
    seen: list[int] = []  # the other work's turns so far, at each render
    real_render = stream.render

    def counting_render(seq: int, kind: str, data: dict[str, Any]) -> Fragment:
        seen.append(turns)
        return real_render(seq, kind, data)

    monkeypatch.setattr(stream, "render", counting_render)
    monkeypatch.setattr(stream, "RENDER_TURN", 0.0)
    done = False

    async def other_work() -> None:  # what the intake would do meanwhile
        nonlocal turns
        while not done:
            turns += 1
            await asyncio.sleep(0)

    worker = asyncio.create_task(other_work())
    try:
        fragments = await hub.read(run_id, 0)  # a page opened on the run
        assert [f.seq for f in fragments] == list(range(1, 101))
        assert len(seen) == 100 and all(b > a for a, b in zip(seen, seen[1:], strict=False))
        async with hub.subscribe(run_id, 100) as queue:
            await store(engine, run_id, *range(101, 151))
            seen.clear()
            hub._rendered.clear()  # noqa: SLF001 - rendered afresh by the tick
            await hub.tick()
            assert [f.seq for f in queue.get_nowait()] == list(range(101, 151))
        assert len(seen) == 50 and all(b > a for a, b in zip(seen, seen[1:], strict=False))
    finally:
        done = True
        await worker
        await hub.close()
