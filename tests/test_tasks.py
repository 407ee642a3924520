"""SingleFlight: callers asking for the same thing at the same moment share one call."""

from __future__ import annotations

import asyncio

import pytest

from bot.tasks import SingleFlight


async def test_concurrent_callers_share_one_call_and_later_ones_call_again() -> None:
    flight: SingleFlight[int] = SingleFlight()
    calls = 0
    gate = asyncio.Event()

    async def fetch() -> int:
        nonlocal calls
        calls += 1
        await gate.wait()
        return calls

    waiting = [asyncio.ensure_future(flight.run("repo", fetch)) for _ in range(5)]
    other = asyncio.ensure_future(flight.run("other", fetch))
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.gather(*waiting) == [1] * 5  # one call for the five
    assert await other == 2 and calls == 2  # another key, another call
    assert await flight.run("repo", fetch) == 3  # the shared call ended: a new one


async def test_an_error_reaches_every_waiter_and_one_cancelled_waiter_cancels_nobody() -> None:
    flight: SingleFlight[int] = SingleFlight()
    gate = asyncio.Event()

    async def failing() -> int:
        await gate.wait()
        raise LookupError("gone")

    first = asyncio.ensure_future(flight.run("k", failing))
    second = asyncio.ensure_future(flight.run("k", failing))
    await asyncio.sleep(0)
    first.cancel()
    gate.set()
    with pytest.raises(LookupError):
        await second
    with pytest.raises(asyncio.CancelledError):
        await first
