"""/readyz's write probe under intake load: does a busy writer make it answer 503, and how long
does it take? Against a real `agentbot serve` (issue 14, part 3).

    .venv/bin/python -m bench.ready_probe --seconds 10 --senders 64
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp

from bench import databases, payload
from bench.servers import Server, agentbot, free_port, rsa_private_key_pem

SECRET = "ready-probe-bench"


async def measure(server: Server, seconds: float, senders: int) -> None:
    base, stop = server.url, time.monotonic() + seconds
    accepted = 0
    probes: list[tuple[int, float, str]] = []

    async def send(session: aiohttp.ClientSession, sender: int) -> None:
        nonlocal accepted
        count = 0
        while time.monotonic() < stop:
            # Distinct bodies: the same signed body twice is a replay, not stored.
            body = payload.encode({**payload.issues_labeled(), "bench": f"{sender}-{count}"})
            count += 1
            async with session.post(f"{base}/webhook", data=body, headers={
                    "Content-Type": "application/json", "X-GitHub-Event": "issues",
                    "X-GitHub-Delivery": str(uuid.uuid4()),
                    "X-Hub-Signature-256": payload.sign(body, SECRET)}) as response:
                await response.read()
                accepted += response.status == 202

    async def probe(session: aiohttp.ClientSession) -> None:
        while time.monotonic() < stop:
            began = time.monotonic()
            async with session.get(f"{base}/readyz") as response:
                probes.append((response.status, time.monotonic() - began,
                               (await response.text())[:200]))
            await asyncio.sleep(0.1)

    connector = aiohttp.TCPConnector(limit=senders + 4)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(send(session, n) for n in range(senders)), probe(session))
    refused = [p for p in probes if p[0] != 200]
    print(f"{accepted} deliveries answered 202 in {seconds:g} s by {senders} senders")
    print(f"/readyz: {len(probes)} probes, {len(refused)} not 200 {refused[:3] or ''}, "
          f"slowest {max(p[1] for p in probes) * 1000:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--senders", type=int, default=64, help="concurrent deliveries")
    parser.add_argument("--postgres", nargs="?", const=databases.DEFAULT_POSTGRES,
                        help="a database of its own on this PostgreSQL server (default "
                             "server: %(const)s) instead of a fresh SQLite file")
    parser.add_argument("--cpu", default="0", help="the server's CPU (taskset)")
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="agentbot-ready-")))
        database = (stack.enter_context(databases.postgres(args.postgres)) if args.postgres
                    else databases.sqlite(work))
        print(database.label)
        server = agentbot(work, database_url=database.url, secret=SECRET,
                          private_key=rsa_private_key_pem(), cpu=args.cpu)
        # Not the defaults: another agentbot may be running here.
        server.env.update(AGENTBOT_GATEWAY_PORT=str(free_port()),
                          AGENTBOT_GATEWAY_PROXY_PORT=str(free_port()))
        server.start()
        try:
            asyncio.run(measure(server, args.seconds, args.senders))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
