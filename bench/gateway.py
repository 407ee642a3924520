"""What the gateway adds to a model stream: time to first byte, p99, throughput, CPU per MB.

An upstream double streams a 4,000-token Anthropic Messages answer (SSE, one delta event per
token, as fast as it can); clients read it directly and through the gateway's model proxy,
with 50 streams at once, in interleaved rounds. The upstream and the gateway run as their own
processes so the gateway's CPU time is its own.

    .venv/bin/python -m bench.gateway --streams 50 --requests 400 --rounds 3

Figures and how to read them: bench/README.md ("Gateway").
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from bot.gateway.grants import Grant
from bot.gateway.models import ModelProxy, Upstream, add_routes

CREDENTIAL = "agw_1_benchBenchBenchBenchBenchBenchBenchBenchBen"
TOKENS = 4000
MODEL = "claude-sonnet-4-5-20250929"


def sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def answer_events(tokens: int = TOKENS) -> list[bytes]:
    """The events of one streamed answer of `tokens` output tokens, one token a delta."""
    events = [sse("message_start", {"type": "message_start", "message": {
        "id": "msg_bench", "type": "message", "role": "assistant", "model": MODEL,
        "content": [], "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": 1200, "output_tokens": 1}}}),
        sse("content_block_start", {"type": "content_block_start", "index": 0,
                                    "content_block": {"type": "text", "text": ""}})]
    events += [sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                           "delta": {"type": "text_delta", "text": " word"}})
               for _ in range(tokens)]
    events += [sse("content_block_stop", {"type": "content_block_stop", "index": 0}),
               sse("message_delta", {"type": "message_delta",
                                     "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                     "usage": {"output_tokens": tokens}}),
               sse("message_stop", {"type": "message_stop"})]
    return events


# --- the two servers, each run as `python -m bench.gateway --serve ...` ----------------------

async def _upstream_app(chunk: int, interval_ms: float) -> web.Application:
    """Streams the answer as a provider does: the first event at once, then the tokens in
    writes of `chunk` events, `interval_ms` apart (a provider's pace, coalesced by TCP)."""
    events = answer_events()
    writes = [events[0]] + [b"".join(events[i:i + chunk]) for i in range(1, len(events), chunk)]

    async def messages(request: web.Request) -> web.StreamResponse:
        await request.read()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for data in writes:
            await response.write(data)
            if interval_ms:
                await asyncio.sleep(interval_ms / 1000)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/v1/messages", messages)
    return app


class _OneGrant:
    async def grant(self, credential: str) -> Grant | None:
        return Grant(run_id=1, installation_id=1, repo_full_name="o/r") \
            if credential == CREDENTIAL else None


class _NoAudit:
    async def record(self, run_id: int, kind: str, data: dict[str, Any]) -> None:
        return None


async def _gateway_app(upstream: str) -> web.Application:
    app = web.Application(client_max_size=32 << 20)
    session = aiohttp.ClientSession()
    booked: list[Any] = []

    async def book(grant: Grant, provider: str, usage: Any) -> None:
        booked.append(usage)  # what the ledger would write, without the database

    proxy = ModelProxy(_OneGrant(), _NoAudit(), session,
                       {"anthropic": Upstream(upstream, "sk-ant-bench-operator-key",
                                              "anthropic")}, on_usage=book)
    add_routes(app, proxy)

    async def close(_app: web.Application) -> None:
        await session.close()

    app.on_cleanup.append(close)
    return app


def _serve(kind: str, port: int, upstream: str, chunk: int, interval_ms: float) -> None:
    app = _upstream_app(chunk, interval_ms) if kind == "upstream" else _gateway_app(upstream)
    try:
        import uvloop
        uvloop.install()
    except ImportError:
        pass
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


# --- the load --------------------------------------------------------------------------------

@dataclass
class Sample:
    ttfb: float
    total: float
    size: int


async def _one(session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> Sample:
    body = {"model": MODEL, "max_tokens": TOKENS, "stream": True,
            "messages": [{"role": "user", "content": "Write 4000 words."}]}
    start = time.perf_counter()
    async with session.post(url, json=body, headers=headers) as response:
        assert response.status == 200, response.status
        first = None
        size = 0
        async for chunk in response.content.iter_any():
            if first is None:
                first = time.perf_counter()
            size += len(chunk)
    end = time.perf_counter()
    return Sample(ttfb=(first or end) - start, total=end - start, size=size)


async def _load(url: str, headers: dict[str, str], streams: int, requests: int,
                spread: float = 0.0) -> list[Sample]:
    """`requests` requests, `streams` at a time. With `spread` (seconds, about one request's
    duration) the streams start that far apart in all, so requests arrive evenly, as a
    fleet of sandboxes sends them; without, all streams start, and so end and start again,
    together: bursts of `streams` requests at once."""
    samples: list[Sample] = []
    queue = iter(range(requests))
    connector = aiohttp.TCPConnector(limit=streams)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def worker(index: int) -> None:
            await asyncio.sleep(index * spread / streams)
            for _ in queue:
                samples.append(await _one(session, url, headers))

        await asyncio.gather(*(worker(index) for index in range(streams)))
    return samples


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Row:
    path: str
    ttfb_p50_ms: float
    ttfb_p99_ms: float
    total_p50_ms: float
    total_p99_ms: float
    mb_per_s: float
    cpu_ms_per_mb: float | None


def _row(path: str, samples: list[Sample], seconds: float, cpu: float | None) -> Row:
    def pct(values: list[float], q: int) -> float:
        return statistics.quantiles(values, n=100, method="inclusive")[q - 1] * 1000

    ttfb = [s.ttfb for s in samples]
    total = [s.total for s in samples]
    megabytes = sum(s.size for s in samples) / 1e6
    return Row(path, pct(ttfb, 50), pct(ttfb, 99), pct(total, 50), pct(total, 99),
               megabytes / seconds, None if cpu is None else cpu * 1000 / megabytes)


async def _wait_listening(port: int) -> None:
    for _ in range(200):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        writer.close()
        await writer.wait_closed()
        return
    raise RuntimeError(f"nothing listens on {port}")


@contextlib.asynccontextmanager
async def _servers(upstream_port: int, gateway_port: int, chunk: int,
                   interval_ms: float) -> AsyncIterator[tuple[Any, Any]]:
    upstream_url = f"http://127.0.0.1:{upstream_port}"
    processes = [await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.gateway", "--serve", kind, "--port", str(port),
        "--upstream", upstream_url, "--chunk", str(chunk), "--interval-ms", str(interval_ms))
        for kind, port in (("upstream", upstream_port), ("gateway", gateway_port))]
    try:
        await _wait_listening(upstream_port)
        await _wait_listening(gateway_port)
        yield processes[0], processes[1]
    finally:
        for process in processes:
            process.terminate()
            await process.wait()


async def run(streams: int, requests: int, rounds: int, chunk: int,
              interval_ms: float, pin: bool = False, burst: bool = False) -> list[Row]:
    from aiohttp.test_utils import unused_port

    upstream_port, gateway_port = unused_port(), unused_port()
    direct = f"http://127.0.0.1:{upstream_port}/v1/messages"
    through = f"http://127.0.0.1:{gateway_port}/anthropic/v1/messages"
    rows: list[Row] = []
    async with _servers(upstream_port, gateway_port, chunk, interval_ms) as (upstream, gateway):
        if pin:
            # The load and the upstream share one core, the gateway has the other: both paths
            # then run the same two processes on the same core, and the gateway is measured
            # as it runs in a deployment (a replica with a core of its own), not by how three
            # busy processes share two cores.
            for pid in (os.getpid(), upstream.pid):
                os.sched_setaffinity(pid, {0})
            os.sched_setaffinity(gateway.pid, {1})
        warm = await _load(through, {"x-api-key": CREDENTIAL}, streams, streams)
        spread = 0.0 if burst else statistics.median(sample.total for sample in warm)
        for _ in range(rounds):
            start = time.perf_counter()
            samples = await _load(direct, {"x-api-key": "sk-direct"}, streams, requests, spread)
            rows.append(_row("direct", samples, time.perf_counter() - start, None))
            cpu = _cpu_seconds(gateway.pid)
            start = time.perf_counter()
            samples = await _load(through, {"x-api-key": CREDENTIAL}, streams, requests, spread)
            elapsed = time.perf_counter() - start
            rows.append(_row("gateway", samples, elapsed, _cpu_seconds(gateway.pid) - cpu))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--streams", type=int, default=50)
    parser.add_argument("--requests", type=int, default=400, help="per round and path")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=20,
                        help="token events per upstream write")
    parser.add_argument("--interval-ms", type=float, default=2.0,
                        help="pause between upstream writes (0: as fast as it can)")
    parser.add_argument("--burst", action="store_true",
                        help="start every stream at once (requests then come in bursts)")
    parser.add_argument("--pin", action="store_true",
                        help="the load and the upstream on CPU 0, the gateway on CPU 1")
    parser.add_argument("--json", help="also write the rows to this file")
    parser.add_argument("--serve", choices=["upstream", "gateway"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--upstream", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve(args.serve, args.port, args.upstream, args.chunk, args.interval_ms)
        return 0
    rows = asyncio.run(run(args.streams, args.requests, args.rounds, args.chunk,
                           args.interval_ms, args.pin, args.burst))
    print(f"{'path':8} {'ttfb p50':>9} {'ttfb p99':>9} {'total p50':>10} {'total p99':>10} "
          f"{'MB/s':>7} {'CPU ms/MB':>10}")
    for row in rows:
        cpu = "" if row.cpu_ms_per_mb is None else f"{row.cpu_ms_per_mb:10.1f}"
        print(f"{row.path:8} {row.ttfb_p50_ms:8.2f}ms {row.ttfb_p99_ms:8.2f}ms "
              f"{row.total_p50_ms:9.1f}ms {row.total_p99_ms:9.1f}ms {row.mb_per_s:7.1f} {cpu}")
    for path in ("direct", "gateway"):
        mine = [r for r in rows if r.path == path]
        print(f"median {path}: ttfb p99 {statistics.median(r.ttfb_p99_ms for r in mine):.2f} ms, "
              f"total p99 {statistics.median(r.total_p99_ms for r in mine):.1f} ms, "
              f"{statistics.median(r.mb_per_s for r in mine):.1f} MB/s")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump([row.__dict__ for row in rows], handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
