"""Listening ports with limits: a cap on connections, deadlines for a request's head and body,
and one log line for each connection cut."""

from __future__ import annotations

import asyncio
import logging
import resource
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler

log = logging.getLogger(__name__)

# Beyond the cap, a few connections are let in for health checks only, so that a port full of
# slow clients still tells Kubernetes it is alive; their request head must come at once.
RESERVE_CONNECTIONS = 16
RESERVE_HEAD_SECONDS = 2.0
# Under a flood the reserve takes every newcomer for a moment (up to the burst), so that a
# health check among them is read before anyone is turned away; then it is trimmed back,
# the oldest connections still without a request going first, never one younger than that
# moment (its head may not have been read yet: the loop may have been busy).
RESERVE_BURST = 1024
RESERVE_TRIM_SECONDS = 0.05
# Files the process needs besides its listeners' connections: the database pool, GitHub and
# gateway sessions, sandboxes' pipes, logs.
OWN_FILES = 512
REFUSALS_WINDOW_SECONDS = 10.0
BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        b"Content-Length: 49\r\nConnection: close\r\n\r\n"
        b'{"message": "too many connections; try again"}\r\n')

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Limits:
    """What one port allows each connection and all of them together."""

    max_connections: int
    head_seconds: float  # from connecting, or from the previous answer, to a whole head
    body_seconds: float  # from the head to the body's last byte
    health_paths: frozenset[str] = frozenset({"/healthz"})  # served from the reserve
    reserve_burst: int = RESERVE_BURST  # the most the reserve holds for a moment


def fit_to_file_limit(wanted: int, ports: int) -> tuple[int, int]:
    """The cap per port and its reserve's burst: `wanted` and RESERVE_BURST, lowered so that
    every port full stays below the file limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted, RESERVE_BURST
    room = (soft - OWN_FILES) // ports
    burst = max(RESERVE_CONNECTIONS, min(RESERVE_BURST, room // 4))
    cap = max(1, min(wanted, room - burst))
    if cap < wanted:
        log.warning("AGENTBOT_MAX_CONNECTIONS lowered from %d to %d per port to stay below "
                    "the file limit (%d); raise `ulimit -n` to allow more", wanted, cap, soft)
    return cap, burst


class Listener:
    """The connections of one port: admits, times and cuts them; its middleware sees requests."""

    def __init__(self, name: str, limits: Limits) -> None:
        self.name = name
        self.limits = limits
        self.open: dict[RequestHandler, _Guarded] = {}
        self.reserve: dict[_Guarded, None] = {}  # insertion order: the oldest first
        self.refused = 0
        self._refusals_logged_at = -REFUSALS_WINDOW_SECONDS
        self._trim: asyncio.TimerHandle | None = None
        self.cuts = 0

    # -- admission ---------------------------------------------------------------------------

    def admit(self, conn: _Guarded) -> bool:
        """Whether a new connection may stay, and as what; False: it is refused at once."""
        if len(self.open) - len(self.reserve) < self.limits.max_connections:
            return True
        if len(self.reserve) >= self.limits.reserve_burst:
            self.refuse()
            return False
        conn.in_reserve = True
        self.reserve[conn] = None
        if len(self.reserve) > RESERVE_CONNECTIONS and self._trim is None:
            self._trim = asyncio.get_running_loop().call_later(RESERVE_TRIM_SECONDS,
                                                               self._trim_reserve)
        return True

    def _trim_reserve(self) -> None:
        """Back to the reserve's size: a health check sent its head at once and is served or
        being served; slow clients cannot hold the reserve."""
        self._trim = None
        excess = len(self.reserve) - RESERVE_CONNECTIONS
        if excess <= 0:
            return
        loop = asyncio.get_running_loop()
        waited = loop.time() - RESERVE_TRIM_SECONDS
        idle = [c for c in self.reserve if c.request is None and c.since <= waited]
        for conn in idle[:excess]:
            self.reserve.pop(conn)
            conn.abort()
            self.refuse()
        if len(self.reserve) > RESERVE_CONNECTIONS:
            self._trim = loop.call_later(RESERVE_TRIM_SECONDS, self._trim_reserve)

    def refuse(self) -> None:
        """Count a connection turned away; one log line per window, not one per connection."""
        self.refused += 1
        now = time.monotonic()
        if now - self._refusals_logged_at >= REFUSALS_WINDOW_SECONDS:
            self._refusals_logged_at = now
            log.warning("%s port full (%d connections): refusing new ones; %d refused so far",
                        self.name, self.limits.max_connections, self.refused)

    def cut(self, conn: _Guarded, reason: str) -> None:
        """End a connection that broke a deadline, with one log line."""
        self.cuts += 1
        log.warning("%s port: cut the connection from %s: %s", self.name, conn.peer, reason)
        conn.abort()

    # -- requests ----------------------------------------------------------------------------

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        conn = self.open.get(request.protocol)
        if conn is None:
            if request.transport is None or request.transport.is_closing():
                # Gone while its request waited for the handler: nobody to answer.
                log.info("%s port: a client left before its request was handled", self.name)
                return web.Response(status=408)
            return await handler(request)  # not one of ours (a test client's server)
        if conn.in_reserve and (request.method not in ("GET", "HEAD")
                                or request.path not in self.limits.health_paths):
            self.refuse()
            return _busy()
        conn.request_started(request)
        try:
            response = await handler(request)
        except (ConnectionResetError, RuntimeError):
            # aiohttp raises RuntimeError("Connection closed.") for a read on a connection
            # that ended before the handler started reading.
            if not conn.closed:
                raise  # not this connection's end: a call the handler made failed
            # The connection ended under the handler (a cut, or the client left): already
            # logged if cut, and nobody is there to answer.
            if not conn.was_cut:
                log.info("%s port: the client from %s left mid-request", self.name, conn.peer)
            return web.Response(status=408)
        finally:
            conn.request_ended()
        if conn.in_reserve:
            response.force_close()
        return response


def _busy() -> web.Response:
    response = web.json_response({"message": "too many connections; try again"}, status=503)
    response.force_close()
    return response


class _Guarded(asyncio.Protocol):
    """aiohttp's protocol for one connection, with the listener's deadlines around it."""

    def __init__(self, listener: Listener, make: Callable[[], RequestHandler]) -> None:
        self.listener = listener
        self._make = make
        self.inner: RequestHandler | None = None
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.in_reserve = False
        self.was_cut = False
        self.request: web.Request | None = None
        self.answered = 0  # requests answered on this connection
        self.received = 0  # bytes since the last answer (or since connecting)
        self.since = 0.0  # when it connected, in the loop's time
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports have asyncio.Transport's methods without being its subclass.
        transport = cast(asyncio.Transport, transport)
        self.transport = transport
        self.since = asyncio.get_running_loop().time()
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        if not self.listener.admit(self):
            transport.write(BUSY)
            transport.close()
            return
        self.inner = self._make()
        self.listener.open[self.inner] = self
        self.inner.connection_made(transport)
        self._arm(RESERVE_HEAD_SECONDS if self.in_reserve else self.listener.limits.head_seconds,
                  self._head_due)

    def data_received(self, data: bytes) -> None:
        if self.inner is not None:
            self.received += len(data)
            self.inner.data_received(data)

    def eof_received(self) -> None:
        if self.inner is not None:
            self.inner.eof_received()

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self.inner is None:
            return
        self.listener.open.pop(self.inner, None)
        self.listener.reserve.pop(self, None)
        self.inner.connection_lost(exc)

    @property
    def closed(self) -> bool:
        return self.transport is None or self.transport.is_closing()

    def abort(self) -> None:
        self.was_cut = True
        if self.transport is not None:
            self.transport.abort()

    # -- deadlines ---------------------------------------------------------------------------

    def request_started(self, request: web.Request) -> None:
        self.request = request
        self._disarm()
        if not request.content.is_eof():
            self._arm(self.listener.limits.body_seconds, self._body_due)

    def request_ended(self) -> None:
        self.request = None
        self.answered += 1
        self.received = 0
        if not self.closed:
            self._arm(self.listener.limits.head_seconds, self._head_due)

    def _arm(self, seconds: float, due: Callable[[], None]) -> None:
        self._disarm()
        self._timer = asyncio.get_running_loop().call_later(seconds, due)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _head_due(self) -> None:
        self._timer = None
        if self.request is not None or self.closed:
            return
        if self.answered and not self.received:
            self.abort()  # an idle keep-alive connection: closing it is no event
            return
        seconds = RESERVE_HEAD_SECONDS if self.in_reserve else self.listener.limits.head_seconds
        what = "the next request's head" if self.answered else "a request head"
        self.listener.cut(self, f"{what} did not arrive within {seconds:g} s")

    def _body_due(self) -> None:
        self._timer = None
        request = self.request
        if request is None or request.content.is_eof():
            return
        self.listener.cut(self, f"the body of {request.method} {request.path} did not arrive "
                                f"within {self.listener.limits.body_seconds:g} s")


class GuardedSite(web.BaseSite):
    """A listening socket served through a Listener (aiohttp's SockSite, with the limits)."""

    def __init__(self, runner: web.BaseRunner, sock: socket.socket, listener: Listener,
                 *, backlog: int = 1024) -> None:
        super().__init__(runner, backlog=backlog)
        self._sock = sock
        self._listener = listener
        host, port = sock.getsockname()[:2]
        self._name = f"http://{host}:{port}"

    @property
    def name(self) -> str:
        return self._name

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        listener = self._listener

        def protocol() -> asyncio.Protocol:
            return _Guarded(listener, server)

        self._server = await asyncio.get_running_loop().create_server(
            protocol, sock=self._sock, backlog=self._backlog)


def guarded_runner(app: web.Application, listener: Listener, **kwargs: Any) -> web.AppRunner:
    """An AppRunner for `app` whose requests pass through the listener's middleware.

    aiohttp's own keep-alive timer comes after the listener's deadlines: it would close a
    connection without a word.
    """
    app.middlewares.append(listener.middleware)
    return web.AppRunner(app, keepalive_timeout=listener.limits.head_seconds + 5,
                         logger=_ServerLog(listener.name), **kwargs)


class _ServerLog(logging.LoggerAdapter):
    """aiohttp's server logger, with a request it cannot parse as one line, not a traceback:
    anyone can send one. A handler's own failure keeps its traceback."""

    def __init__(self, port: str) -> None:
        super().__init__(logging.getLogger("aiohttp.server"), {})
        self.port = port

    def exception(self, msg: object, *args: Any, exc_info: Any = True, **kwargs: Any) -> None:
        if isinstance(exc_info, HttpProcessingError):
            words = str(exc_info.message).strip().splitlines() or [type(exc_info).__name__]
            log.warning("%s port: refused a malformed request from %s: %s", self.port,
                        args[0] if args else "?", words[0][:200])
            return
        self.logger.exception(msg, *args, exc_info=exc_info, **kwargs)
