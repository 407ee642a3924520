"""Ports for servers a test stops and starts again on the same number (a crash and restart).

aiohttp's `unused_port()` picks from the kernel's ephemeral range, where the test's own
outgoing connections take their local ports: between a stop and a start one of them could
take the number, and the restart failed with "Address already in use". These come from below
that range, where no outgoing connection goes.
"""

from __future__ import annotations

import random
import socket

LOW, HIGH = 20000, 32767  # below Linux's default ephemeral range (32768-60999)


def stable_port() -> int:
    """A loopback port that is free now and is not handed out to outgoing connections."""
    for _ in range(200):
        port = random.randint(LOW, HIGH)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port between {LOW} and {HIGH}")
