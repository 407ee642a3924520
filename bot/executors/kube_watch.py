"""One list-then-watch loop over a Kubernetes collection, its stream read in a thread."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import socket
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from typing import Any

log = logging.getLogger(__name__)

Obj = dict[str, Any]


class WatchExpired(Exception):
    """The watch's resourceVersion is older than the server remembers (410 Gone)."""


class WatchError(Exception):
    """The server ended a watch with an ERROR event other than 410."""


def _lines(response: Any) -> Iterator[bytes]:
    """Newline-delimited watch events as they arrive, whatever the chunking."""
    buffer = b""
    for chunk in response.stream(amt=None, decode_content=False):
        buffer += chunk
        *complete, buffer = buffer.split(b"\n")
        yield from (line for line in complete if line.strip())
    if buffer.strip():
        yield buffer


def _shutdown(response: Any) -> None:
    """Wake a thread blocked reading the response (urllib3 before 2.3 lacks `shutdown`)."""
    if hasattr(response, "shutdown"):
        response.shutdown()
        return
    sock = getattr(getattr(response, "connection", None), "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class ListWatch:
    """Keeps a collection in view: list, watch from the list's resourceVersion, and on 410
    or any error list again (with backoff after errors). Never polls objects one by one."""

    def __init__(self, kind: str, *, list_objects: Callable[[], tuple[list[Obj], str]],
                 open_watch: Callable[[str], Any], on_list: Callable[[list[Obj]], None],
                 on_event: Callable[[str, Obj], None], threads: Executor,
                 backoff_base: float = 0.5, backoff_max: float = 30.0,
                 on_restart: Callable[[], None] = lambda: None,
                 on_error: Callable[[], None] = lambda: None) -> None:
        self.kind = kind
        self._list, self._open = list_objects, open_watch
        self._on_list, self._on_event = on_list, on_event
        self._threads = threads
        self._backoff_base, self._backoff_max = backoff_base, backoff_max
        self._on_restart, self._on_error = on_restart, on_error
        self.synced = False  # the last list succeeded and no error has happened since
        self.running = False
        self._stopping = False
        self._lock = threading.Lock()
        self._response: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def run(self) -> None:
        """Run until `stop()`; every event and list result is handed over on the loop."""
        self._loop = asyncio.get_running_loop()
        self.running = True
        try:
            await self._list_and_watch()
        finally:
            self.running = False

    async def _list_and_watch(self) -> None:
        assert self._loop is not None
        delay, listed = self._backoff_base, False
        while not self._stopping:
            try:
                if listed:
                    self._on_restart()
                items, version = await asyncio.to_thread(self._list)
                listed = True
                self._on_list(items)
                self.synced = True
                while not self._stopping:
                    # A clean end is the server's timeoutSeconds: resume from where it stopped.
                    version = await self._loop.run_in_executor(self._threads, self._follow,
                                                               version)
                    delay = self._backoff_base
            except WatchExpired:
                log.info("watch of %s expired (410 Gone); listing again", self.kind)
            except Exception as exc:  # disconnects, 5xx, garbage: list again after a pause
                if self._stopping:
                    return
                self._on_error()
                self.synced = False
                log.warning("watch of %s failed (%s); listing again in %.1fs", self.kind,
                            type(exc).__name__, delay)
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))  # noqa: S311 - jitter
                delay = min(delay * 2, self._backoff_max)

    def stop(self) -> None:
        """Make `run` return and wake the thread blocked on the stream; safe from any thread."""
        with self._lock:
            self._stopping = True
            if self._response is not None:
                _shutdown(self._response)

    def _follow(self, version: str) -> str:
        """In a watch thread: read one watch request to its end; the last resourceVersion."""
        response = self._open(version)
        with self._lock:
            if self._stopping:
                response.close()
                response.release_conn()
                return version
            self._response = response
        try:
            for line in _lines(response):
                event = json.loads(line)
                event_type, obj = event.get("type"), event.get("object") or {}
                if event_type == "ERROR":
                    if obj.get("code") == 410:
                        raise WatchExpired(obj.get("message", ""))
                    raise WatchError(f"{obj.get('code')} {obj.get('reason')}")
                version = (obj.get("metadata") or {}).get("resourceVersion") or version
                if event_type != "BOOKMARK" and not self._stopping and self._loop is not None:
                    self._loop.call_soon_threadsafe(self._deliver, event_type, obj)
            return version
        finally:
            with self._lock:
                self._response = None
            # Closed, not just released: the connection may still hold unread bytes.
            response.close()
            response.release_conn()

    def _deliver(self, event_type: str, obj: Obj) -> None:
        if not self._stopping:
            self._on_event(event_type, obj)
