"""The sandbox's end of the local executor's network relay.

Under bubblewrap the sandbox gets a network namespace of its own: a loopback interface and
nothing else. The executor puts one Unix socket per endpoint the sandbox needs (the gateway,
its proxy, the bot's internal port) in the relay directory, with `endpoints.json` naming the
loopback address and port each stands for. This module listens on those addresses inside the
namespace and carries each connection over its socket, so the spec's URLs work unchanged and
no other address outside is reachable at all.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import threading
from pathlib import Path

log = logging.getLogger(__name__)

ENDPOINTS_FILE = "endpoints.json"
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
CHUNK = 64 * 1024


def socket_path(directory_fd: int, index: int) -> str:
    """A short path to the index-th socket: through the directory's descriptor, so a deep
    run directory cannot push it past the 107 bytes a Unix socket path may have."""
    return f"/proc/self/fd/{directory_fd}/{index}.sock"


def read_endpoints(directory: Path) -> list[tuple[str, int]]:
    """The (host, port) pairs the relay directory's sockets stand for, in socket order."""
    data = json.loads((directory / ENDPOINTS_FILE).read_text(encoding="utf-8"))
    endpoints = [(str(host), int(port)) for host, port in data]
    for host, port in endpoints:
        if host not in LOOPBACK or not 0 < port < 65536:
            raise ValueError(f"relay endpoint {host}:{port} is not a loopback address")
    return endpoints


def start(directory: Path) -> list[socket.socket]:
    """Listen on every endpoint and relay its connections; returns the listening sockets."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    listeners = []
    for index, (host, port) in enumerate(read_endpoints(directory)):
        listener = socket.create_server((host, port), reuse_port=False)
        listeners.append(listener)
        threading.Thread(target=_accept, args=(listener, socket_path(fd, index)),
                         name=f"relay-{port}", daemon=True).start()
    return listeners


def _accept(listener: socket.socket, path: str) -> None:
    while True:
        try:
            inside, _ = listener.accept()
        except OSError:
            return  # closed
        threading.Thread(target=_connect, args=(inside, path), daemon=True).start()


def _connect(inside: socket.socket, path: str) -> None:
    outside = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        outside.connect(path)
    except OSError as exc:
        # The bot is away (restarting): the client sees a closed connection and retries.
        log.warning("relay: the executor's socket did not answer (%s)", exc.strerror)
        outside.close()
        inside.close()
        return
    back = threading.Thread(target=_pump, args=(outside, inside), daemon=True)
    back.start()
    _pump(inside, outside)
    back.join()
    outside.close()
    inside.close()


def _pump(source: socket.socket, target: socket.socket) -> None:
    """Copy until the source ends, then end the target's writing half (a half-close, as
    HTTP clients that send their request and wait for the answer expect)."""
    try:
        while data := source.recv(CHUNK):
            target.sendall(data)
    except OSError:
        pass
    with contextlib.suppress(OSError):
        target.shutdown(socket.SHUT_WR)
    with contextlib.suppress(OSError):
        source.shutdown(socket.SHUT_RD)
