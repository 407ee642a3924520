"""The local executor's end of the network relay: a sandbox under bubblewrap has a network
namespace with nothing but loopback, and reaches the gateway and the bot's internal port only
through the Unix sockets this module serves in its run directory (see `sandbox/relay.py`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from pathlib import Path
from urllib.parse import urlsplit

from bot.executors.base import RunSpec
from sandbox.relay import ENDPOINTS_FILE, LOOPBACK, socket_path

log = logging.getLogger(__name__)

NET_DIR = "net"
CHUNK = 64 * 1024
CONNECT_TIMEOUT = 10.0


def endpoints(spec: RunSpec) -> list[tuple[str, int]] | None:
    """The loopback (host, port) pairs the sandbox must reach: the bot's internal port, the
    gateway's two, and where it clones from (the gateway's git proxy, as the bot writes the
    spec). None when one of them is not on loopback: then a private network namespace could
    not reach it, and the sandbox shares the machine's network instead."""
    found: list[tuple[str, int]] = []
    for url in (spec.callback_url, spec.gateway_url, spec.proxy_url, spec.clone_url):
        if not url:
            continue
        parts = urlsplit(url)
        host = parts.hostname or ""
        if host not in LOOPBACK:
            return None
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if (host, port) not in found:
            found.append((host, port))
    return found


class Relay:
    """The Unix sockets of one run, each carrying connections to one loopback endpoint."""

    def __init__(self, run_dir: Path, targets: list[tuple[str, int]]) -> None:
        self.directory = run_dir / NET_DIR
        self.targets = targets
        self._fd: int | None = None
        self._servers: list[asyncio.AbstractServer] = []
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Serve the sockets; stale ones (the bot restarted) are replaced."""
        self.directory.mkdir(mode=0o700, exist_ok=True)
        (self.directory / ENDPOINTS_FILE).write_text(json.dumps(self.targets),
                                                     encoding="utf-8")
        self._fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        for index, (host, port) in enumerate(self.targets):
            path = socket_path(self._fd, index)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

            async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                             host: str = host, port: int = port) -> None:
                task = asyncio.current_task()
                assert task is not None
                self._connections.add(task)
                try:
                    await _forward(reader, writer, host, port)
                except asyncio.CancelledError:
                    writer.close()  # the relay closes (the bot stops): cut the connection
                finally:
                    self._connections.discard(task)

            self._servers.append(await asyncio.start_unix_server(handle, path=path))

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


async def _forward(inside_reader: asyncio.StreamReader, inside_writer: asyncio.StreamWriter,
                   host: str, port: int) -> None:
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT):
            outside_reader, outside_writer = await asyncio.open_connection(host, port)
    except (OSError, TimeoutError) as exc:
        log.warning("relay: %s:%d did not answer (%s)", host, port, type(exc).__name__)
        inside_writer.close()
        return
    try:
        await asyncio.gather(_pump(inside_reader, outside_writer),
                             _pump(outside_reader, inside_writer))
    finally:
        for writer in (inside_writer, outside_writer):
            writer.close()
            with contextlib.suppress(OSError, ConnectionError):
                await writer.wait_closed()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (OSError, ConnectionError):
        writer.close()
