"""A run's live page: `/runs/{id}/events`, server-sent events resumed by Last-Event-ID."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.runs.ledger import get_run
from bot.store.tables import FINAL_STATES, RunState
from bot.web.pages import CSP, Answer
from bot.web.session import Sealer, Session
from bot.web.stream import Changed, Hub
from bot.web.transcript import sse

KEEPALIVE_SECONDS = 15.0


class LiveRoutes:
    """The event stream of RunPages, which sets these attributes and methods."""

    sealer: Sealer
    hub: Hub | None
    _engine_now: Callable[[], AsyncEngine]

    _visible_run: Callable[[web.Request], Awaitable[tuple[Session, Any] | web.Response]]
    _header: Callable[[Any], Awaitable[str]]  # the run's header, as the page shows it
    _final: Callable[[Any], Awaitable[str]]  # its outcome

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Server-sent events: the run's events after Last-Event-ID, then as they come."""
        session = self.sealer.session(request)
        if session is None:
            return web.Response(status=401, text="sign in first")
        try:
            found = await self._visible_run(request)
        except Answer as answer:
            return web.Response(status=answer.response.status, text="no access")
        if isinstance(found, web.Response):
            return web.Response(status=found.status, text="not found")
        _, run = found
        after_text = request.headers.get("Last-Event-ID") or request.query.get("after") or "0"
        # ASCII digits only: str.isdigit() also takes "²", which int() refuses.
        if not (after_text.isascii() and after_text.isdigit()) or len(after_text) > 10:
            return web.Response(status=400, text="Last-Event-ID must be an event number")
        after = int(after_text)
        assert self.hub is not None
        response = web.StreamResponse(headers={
            "Content-Type": "text/event-stream", "Cache-Control": "no-store",
            "X-Accel-Buffering": "no", "Content-Security-Policy": CSP})
        await response.prepare(request)
        await response.write(b"retry: 2000\n\n")
        try:
            await self._follow(response, run.id, after, session)
        except (ConnectionResetError, aiohttp.ClientConnectionResetError):
            pass  # the viewer left
        return response

    async def _follow(self, response: web.StreamResponse, run_id: int, after: int,
                      session: Session) -> None:
        assert self.hub is not None
        async with self.hub.subscribe(run_id, after) as queue:
            run = await get_run(self._engine_now(), run_id)  # before the read: see `Hub.tick`
            last = after
            for fragment in await self.hub.read(run_id, after):
                await response.write(fragment.event)
                last = fragment.seq
            if run is None:
                return
            await response.write(sse(await self._header(run), "run"))
            if RunState(run.state) in FINAL_STATES:
                await response.write(sse(await self._final(run), "end"))
                return
            while session.expires_at > time.time():  # then the page offers a sign-in again
                try:
                    # asyncio.timeout, not wait_for: no task of its own for every wait.
                    async with asyncio.timeout(KEEPALIVE_SECONDS):
                        message = await queue.get()
                except TimeoutError:
                    await response.write(b": keepalive\n\n")
                    continue
                # What queued up meanwhile goes out in one write.
                chunks: list[bytes] = []
                ended = False
                while True:
                    if message is None:  # the hub closed, or dropped this slow viewer
                        ended = True  # (the browser resumes from Last-Event-ID)
                    elif isinstance(message, Changed):
                        chunks.append(message.payload)  # rendered once, for every viewer
                        ended = message.final
                    else:
                        for fragment in message:
                            if fragment.seq > last:
                                chunks.append(fragment.event)  # encoded once, too
                                last = fragment.seq
                    if ended or queue.empty():
                        break
                    message = queue.get_nowait()
                if chunks:
                    await response.write(b"".join(chunks))
                if ended:
                    return

