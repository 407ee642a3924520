"""Stopping the process's background tasks the same way everywhere, and sharing one call
among those who ask for the same thing at the same moment."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


async def stop(task: asyncio.Task[Any] | None) -> None:
    """Cancel `task` and wait until it has finished; None is already stopped."""
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


class SingleFlight(Generic[T]):
    """Concurrent calls for the same key share one call and its outcome (value or error);
    a call made after it ended makes a new one. A burst of triggers on one repository then
    reads its config, or its branch head, once instead of once each."""

    def __init__(self) -> None:
        self._calls: dict[Hashable, asyncio.Future[T]] = {}

    async def run(self, key: Hashable, call: Callable[[], Awaitable[T]]) -> T:
        pending = self._calls.get(key)
        if pending is not None:
            # shield: one waiter cancelled (its delivery's shutdown) does not cancel the others
            return await asyncio.shield(pending)
        future: asyncio.Future[T] = asyncio.ensure_future(call())
        self._calls[key] = future
        future.add_done_callback(lambda done: self._ended(key, done))
        return await asyncio.shield(future)

    def _ended(self, key: Hashable, done: asyncio.Future[T]) -> None:
        self._calls.pop(key, None)
        if not done.cancelled():
            done.exception()  # retrieved: every waiter may have gone (cancelled)
