"""Many slow clients against a real `agentbot serve`: what they hold, when they are cut, and
whether health checks and deliveries on an open connection go on (issue 14, part 3).

    .venv/bin/python -m bench.slow_clients --slow 5000 --cap 1000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench import payload
from bench.servers import Server, agentbot, free_port, rsa_private_key_pem

SECRET = "slow-clients-bench"


@dataclass
class Figures:
    admitted: int = 0  # slow clients the server kept open until it cut them
    refused: int = 0  # slow clients answered 503 or closed at once
    cut_after: list[float] = field(default_factory=list)
    health: list[float] = field(default_factory=list)
    health_failed: list[str] = field(default_factory=list)
    delivery: list[float] = field(default_factory=list)
    delivery_failed: list[str] = field(default_factory=list)
    max_fds: int = 0


HEAD = b"POST /webhook HTTP/1.1\r\nHost: bot\r\nX-Slow: " + b"a" * 10_000
# A whole head, signed in form (the signature is checked once the body is in), then the body
# of its Content-Length one byte at a time.
BODY = (b"POST /webhook HTTP/1.1\r\nHost: bot\r\nContent-Type: application/json\r\n"
        b"X-GitHub-Event: issues\r\nX-GitHub-Delivery: slow\r\n"
        b"X-Hub-Signature-256: sha256=" + b"0" * 64 + b"\r\nContent-Length: 10000\r\n\r\n"
        + b" " * 10_000)


async def slow_client(port: int, figures: Figures, drip: float, request: bytes) -> None:
    """Connect and send a request one byte every `drip` seconds, never finishing it."""
    began = time.monotonic()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        figures.refused += 1
        return
    start = request.index(b"\r\n\r\n") + 4 if request is BODY else 20
    try:
        writer.write(request[:start])
        for byte in request[start:]:
            try:
                got = await asyncio.wait_for(reader.read(1024), drip)
            except TimeoutError:
                writer.write(bytes([byte]))
                continue
            if got.startswith(b"HTTP/1.1 503"):
                figures.refused += 1
            elif not got or got.startswith(b"HTTP/1.1 408"):
                held = time.monotonic() - began
                if held < 1.0:
                    figures.refused += 1
                else:
                    figures.admitted += 1
                    figures.cut_after.append(held)
            return
    except OSError:
        figures.admitted += 1
        figures.cut_after.append(time.monotonic() - began)
    finally:
        writer.close()


def health(port: int) -> float | str:
    """GET /healthz on a new connection, as a kubelet sends it: seconds, or what went wrong.

    Blocking, in a thread of its own: the event loop that runs thousands of slow clients
    stalls, and would send the probe's head late."""
    began = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: bot\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := sock.recv(4096):
                answer += chunk
    except OSError as exc:
        return type(exc).__name__
    if not answer.startswith(b"HTTP/1.1 200"):
        return answer.split(b"\r\n", 1)[0].decode(errors="replace") or "closed"
    return time.monotonic() - began


async def deliver(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                  body: bytes) -> float | str:
    """One signed delivery on the established connection: seconds, or what went wrong."""
    began = time.monotonic()
    writer.write(b"POST /webhook HTTP/1.1\r\nHost: bot\r\nContent-Type: application/json\r\n"
                 b"X-GitHub-Event: issues\r\nX-GitHub-Delivery: " + str(uuid.uuid4()).encode()
                 + b"\r\nX-Hub-Signature-256: " + payload.sign(body, SECRET).encode()
                 + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    try:
        status = await asyncio.wait_for(reader.readline(), 10)
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        await asyncio.wait_for(reader.readuntil(b"}"), 10)
    except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
        return type(exc).__name__
    if not status.startswith(b"HTTP/1.1 202"):
        return status.decode(errors="replace").strip()
    return time.monotonic() - began


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


async def measure(server: Server, slow: int, drip: float, rate: float,
                  request: bytes) -> Figures:
    figures = Figures()
    port = server.port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    # Distinct bodies: the same signed body twice is a replay.
    bodies = iter(payload.encode({**payload.issues_labeled(), "bench": n})
                  for n in range(1_000_000))
    first = await deliver(reader, writer, next(bodies))
    assert isinstance(first, float), f"no delivery before: {first}"
    clients: list[asyncio.Task[None]] = []

    async def open_clients() -> None:
        for n in range(slow):
            clients.append(asyncio.create_task(slow_client(port, figures, drip, request)))
            if n % 100 == 99:
                await asyncio.sleep(100 / rate)

    # The measurements go on while the clients arrive: an idle connection is closed after
    # the header timeout, as a slow one is.
    opening = asyncio.create_task(open_clients())
    while not opening.done() or not all(c.done() for c in clients):
        figures.max_fds = max(figures.max_fds, open_fds(server.pid))
        took = await asyncio.to_thread(health, port)
        if isinstance(took, str):
            figures.health_failed.append(took)
        else:
            figures.health.append(took)
        delivered = await deliver(reader, writer, next(bodies))
        if isinstance(delivered, str):
            figures.delivery_failed.append(delivered)
            writer.close()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        else:
            figures.delivery.append(delivered)
        await asyncio.sleep(0.5)
    writer.close()
    return figures


def summary(name: str, values: list[float]) -> str:
    if not values:
        return f"{name}: none"
    ordered = sorted(values)
    return (f"{name}: n={len(values)} median={statistics.median(ordered) * 1000:.1f} ms "
            f"max={ordered[-1] * 1000:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slow", type=int, default=5000, help="slow clients to open")
    parser.add_argument("--cap", type=int, default=1000, help="AGENTBOT_MAX_CONNECTIONS")
    parser.add_argument("--header-timeout", default="10s", help="AGENTBOT_HEADER_TIMEOUT")
    parser.add_argument("--drip", type=float, default=1.0, help="seconds between header bytes")
    parser.add_argument("--rate", type=float, default=2000.0, help="new slow clients a second")
    parser.add_argument("--body", action="store_true",
                        help="send whole heads and crawl through the body instead")
    parser.add_argument("--cpu", default="0", help="the server's CPU (taskset)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="agentbot-slow-") as tmp:
        work = Path(tmp)
        server = agentbot(work, database_url=f"sqlite+aiosqlite:///{work / 'bot.db'}",
                          secret=SECRET, private_key=rsa_private_key_pem(), cpu=args.cpu)
        server.env.update(AGENTBOT_MAX_CONNECTIONS=str(args.cap),
                          AGENTBOT_HEADER_TIMEOUT=args.header_timeout,
                          AGENTBOT_LOG_FORMAT="text",
                          # Not the defaults: another agentbot may be running here.
                          AGENTBOT_GATEWAY_PORT=str(free_port()),
                          AGENTBOT_GATEWAY_PROXY_PORT=str(free_port()))
        try:
            server.start()
        except Exception:
            print(server.log_path.read_text()[-2000:])
            raise
        began = time.monotonic()
        try:
            figures = asyncio.run(measure(server, args.slow, args.drip, args.rate,
                                          BODY if args.body else HEAD))
        finally:
            server.stop()
        seconds = time.monotonic() - began
        log = server.log_path.read_text()
    what = "body" if args.body else "head"
    print(f"{args.slow} slow clients ({what}), cap {args.cap}, header timeout "
          f"{args.header_timeout}, {seconds:.1f} s in all")
    print(f"kept until cut: {figures.admitted}; refused at once: {figures.refused}")
    print(summary("cut after", figures.cut_after))
    print(f"most open files in the server: {figures.max_fds}")
    print(summary("GET /healthz on a new connection", figures.health)
          + f"; failed {len(figures.health_failed)} {figures.health_failed or ''}")
    print(summary("signed delivery on an open connection", figures.delivery)
          + f"; failed {len(figures.delivery_failed)} {figures.delivery_failed or ''}")
    lines = log.splitlines()
    print(f"log: {len(lines)} lines, {len(log.encode())} bytes; "
          f"{sum('cut the connection' in line for line in lines)} cuts, "
          f"{sum('refusing new ones' in line for line in lines)} refusal lines, "
          f"{sum('webhook body cut' in line for line in lines)} webhook 408 lines")
    # Text format: time, level, logger. The deliveries' own handlers fail too (GitHub points
    # at a closed port): their errors are the dispatch worker's, not the listeners'.
    errors = Counter(line.split()[2].rstrip(":") for line in lines
                     if len(line.split()) > 2 and line.split()[1] == "ERROR")
    print(f"ERROR lines by logger: {dict(errors) or 'none'}; "
          f"{log.count('Error handling request')} aiohttp request tracebacks")


if __name__ == "__main__":
    main()
