"""The write budget: each installation's content-creating requests paced under GitHub's limits,
in priority order, coalescing what waits, backing off for the requests a refusal concerns."""

from __future__ import annotations

import asyncio

from bot.github.client import GitHubApp
from bot.github.pacing import (
    Priority,
    WriteBudget,
    WriteLimits,
    WriteWindow,
    creates_content,
    priority,
)
from tests.fakes.github import FakeGitHub
from tests.fakes.github_clock import FakeClock


class HeldClock:
    """A clock that moves only when the test says; sleepers wake once it has passed them."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._moved = asyncio.Event()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        until = self.now + seconds
        while self.now < until:
            self._moved.clear()
            await self._moved.wait()

    async def advance(self, seconds: float) -> None:
        self.now += seconds
        self._moved.set()
        for _ in range(5):  # let the woken waiters run
            await asyncio.sleep(0)


def test_what_counts_as_creating_content() -> None:
    assert creates_content("POST", "/repos/o/r/issues/1/comments")
    assert creates_content("patch", "/repos/o/r/check-runs/5?x=1")
    assert creates_content("DELETE", "/repos/o/r/git/refs/heads/x")
    assert not creates_content("GET", "/repos/o/r/pulls")
    # The App's own calls: tokens and webhook redeliveries.
    assert not creates_content("POST", "/app/installations/1/access_tokens")
    assert not creates_content("POST", "/app/hook/deliveries/9/attempts")
    assert not creates_content("DELETE", "/installation/token")


async def write(window: WriteWindow, level: Priority | None = None) -> None:
    """One content-creating request as the client makes it, answered at once."""
    if level is None:
        await window.before_write()
    else:
        with priority(level):
            await window.before_write()
    window.answered()


async def test_writes_go_at_once_until_the_minute_is_full_then_as_it_empties() -> None:
    clock = HeldClock()
    window = WriteWindow(WriteLimits(per_minute=3, per_hour=100), clock, clock.sleep)
    for _ in range(3):
        await asyncio.wait_for(write(window), 1)
    fourth = asyncio.ensure_future(write(window))
    await clock.advance(59)
    assert not fourth.done()
    await clock.advance(1)
    assert fourth.done()
    assert window.sent_within(60) == 1


async def test_the_hour_limit_holds_when_minutes_would_allow_more() -> None:
    clock = HeldClock()
    window = WriteWindow(WriteLimits(per_minute=5, per_hour=6), clock, clock.sleep)
    for _ in range(5):
        await write(window)
    await clock.advance(60)
    await write(window)
    seventh = asyncio.ensure_future(write(window))
    await clock.advance(120)
    assert not seventh.done()  # a minute has room, the hour has not
    await clock.advance(3600 - 180)
    assert seventh.done()


async def test_waiters_go_by_priority_then_in_order_of_arrival() -> None:
    clock = HeldClock()
    window = WriteWindow(WriteLimits(per_minute=1, per_hour=100), clock, clock.sleep)
    await write(window)
    served: list[str] = []

    async def named(name: str, level: Priority) -> None:
        await write(window, level)
        served.append(name)

    tasks = [asyncio.ensure_future(named(name, level)) for name, level in (
        ("progress", Priority.PROGRESS), ("pr", Priority.RESULT), ("reply", Priority.ACK),
        ("report", Priority.RESULT), ("progress-2", Priority.PROGRESS))]
    await asyncio.sleep(0)
    assert window.waiting == 5
    for _ in range(5):
        await clock.advance(60)
    await asyncio.gather(*tasks)
    assert served == ["reply", "pr", "report", "progress", "progress-2"]


async def test_a_cancelled_waiter_gives_its_turn_to_the_next() -> None:
    clock = HeldClock()
    window = WriteWindow(WriteLimits(per_minute=1, per_hour=100), clock, clock.sleep)
    await write(window)
    first = asyncio.ensure_future(write(window, Priority.ACK))
    second = asyncio.ensure_future(write(window, Priority.PROGRESS))
    await asyncio.sleep(0)
    first.cancel()
    await clock.advance(60)
    assert second.done() and window.waiting == 0
    assert window.sent_within(60) == 1  # the cancelled one took nothing


async def test_a_turn_holds_its_writes_and_gives_back_what_it_did_not_send() -> None:
    clock = HeldClock()
    window = WriteWindow(WriteLimits(per_minute=3, per_hour=100), clock, clock.sleep)
    async with window.turn(2, Priority.RESULT):
        assert window.sent_within(60) == 2  # both held from the start of the turn
        await asyncio.wait_for(write(window), 0.5)  # one of them: no second count
        assert window.sent_within(60) == 2
    assert window.sent_within(60) == 1  # the other was not sent: given back
    # A turn for more writes than there is room for waits for all of them together.
    entered = asyncio.Event()
    inside: list[int] = []

    async def three() -> None:
        async with window.turn(3, Priority.ACK):
            entered.set()
            inside.append(window.sent_within(60))

    task = asyncio.ensure_future(three())
    await clock.advance(30)
    assert not entered.is_set()
    await clock.advance(30)
    await asyncio.wait_for(task, 1)
    assert inside == [3] and window.sent_within(60) == 0  # all three unused: given back


async def test_a_write_counts_from_its_answer_and_holds_its_place_until_then() -> None:
    """GitHub counts a write when it arrives, somewhere between its grant and its answer: a
    turn's writes sent late, or answered slowly, hold their places until answered and free
    them 60 s after."""
    clock = HeldClock()
    window = WriteWindow(WriteLimits(per_minute=2, per_hour=100), clock, clock.sleep)
    entered = asyncio.Event()
    send = asyncio.Event()
    answer = asyncio.Event()

    async def slow_report() -> None:
        async with window.turn(2, Priority.RESULT):
            entered.set()
            await send.wait()  # reading the run, taking its lease...
            for _ in range(2):
                await window.before_write()
            await answer.wait()  # ...and a slow GitHub
            window.answered()
            window.answered()

    report = asyncio.ensure_future(slow_report())
    await entered.wait()
    other = asyncio.ensure_future(write(window, Priority.ACK))
    await clock.advance(50)
    assert not other.done()  # both places are taken, though nothing was sent yet
    send.set()
    await clock.advance(20)
    assert not other.done()  # sent, not answered: still taken
    answer.set()
    await report  # answered at 1070
    await clock.advance(59)
    assert not other.done()
    await clock.advance(1)
    assert other.done()  # 60 s after the answers


async def test_a_refusal_blocks_the_window_and_a_prepaid_retry_waits_too() -> None:
    clock = HeldClock()
    window = WriteWindow(WriteLimits(per_minute=10, per_hour=100), clock, clock.sleep)
    async with window.turn(2, Priority.ACK):
        await write(window)
        window.block(60)
        retry = asyncio.ensure_future(write(window))
        await clock.advance(30)
        assert not retry.done()
        await clock.advance(30)
        assert retry.done()


async def test_installations_have_windows_of_their_own() -> None:
    clock = HeldClock()
    budget = WriteBudget(WriteLimits(per_minute=1, per_hour=10), clock, clock.sleep)
    await write(budget.window(1))
    waiting = asyncio.ensure_future(write(budget.window(1)))
    await asyncio.wait_for(write(budget.window(2)), 0.5)
    await asyncio.sleep(0)
    assert not waiting.done() and budget.waiting() == {1: 1}
    waiting.cancel()


# --- through the client, against the fake GitHub -----------------------------------------

def _world(fake_github: FakeGitHub) -> None:
    fake_github.add_installation(1, "octo-org")
    fake_github.add_repo("octo-org", "hello")
    fake_github.add_issue("octo-org/hello", 1)
    fake_github.add_installation(2, "other-org")
    fake_github.add_repo("other-org", "tools")
    fake_github.add_issue("other-org/tools", 1)


async def test_the_client_paces_writes_under_the_limit_and_github_refuses_none(
        fake_github: FakeGitHub, github_app: GitHubApp, fake_clock: FakeClock) -> None:
    _world(fake_github)
    fake_github.limit_content(per_window=5, window=60)
    github_app.writes = WriteBudget(WriteLimits(per_minute=4, per_hour=100), fake_clock,
                                    fake_clock.sleep)
    gh = github_app.installation(1)
    start = fake_clock()
    for n in range(10):
        await gh.post("/repos/octo-org/hello/issues/1/comments", data={"body": f"c{n}"})
    assert fake_github.content_refusals == 0
    # 10 writes at 4 a minute: two minutes of waiting, no more.
    assert 120 <= fake_clock() - start < 180
    assert len(fake_github.comments("octo-org/hello", 1)) == 10


async def test_a_secondary_limit_answer_holds_that_installations_writes_only(
        fake_github: FakeGitHub, github_app: GitHubApp, fake_clock: FakeClock) -> None:
    _world(fake_github)
    fake_github.limit_content(per_window=2, window=60)
    gh = github_app.installation(1)
    for n in range(2):
        await gh.post("/repos/octo-org/hello/issues/1/comments", data={"body": f"c{n}"})
    # The bot's budget (72 a minute) thinks there is room; GitHub says no: the write waits
    # out GitHub's retry-after in the window and then goes.
    start = fake_clock()
    await gh.post("/repos/octo-org/hello/issues/1/comments", data={"body": "third"})
    assert fake_github.content_refusals == 1 and fake_clock() - start >= 60
    github_app.writes.window(1).block(60)
    # Meanwhile reads of that installation, and the other installation's writes, go at once.
    before = fake_clock()
    await gh.getitem("/repos/octo-org/hello")
    await github_app.installation(2).post("/repos/other-org/tools/issues/1/comments",
                                          data={"body": "x"})
    assert fake_clock() == before
    assert [c.body for c in fake_github.comments("octo-org/hello", 1)] == ["c0", "c1", "third"]
