"""Run pages under load: what 200 viewers following 20 live runs cost the bot, and whether
webhook intake slows down while they watch (issue 12's target: at most 5 % CPU more, no
intake delay).

    python -m bench.run_pages                       # 20 runs, 200 viewers, 30 s a phase
    python -m bench.run_pages --viewers 400 --duration 60

The bot is the real public app (webhook intake, its writer and dispatch worker, the run pages)
and the real internal API the sandboxes post events to, in its own process pinned to one core
(`bench.run_pages_server`); the sandboxes' scheduler is left out so that the 20 runs stay
running without sandboxes. This process, pinned to the other core, plays the fake GitHub
(sign-in and access checks), 20 sandboxes posting 2 events a second each and booking a
model response every 3 s (a new header for its viewers, as the gateway's usage rows make) and
the viewers (each a signed-in person with their own token, holding a run's event stream open
and reading it). A webhook sender (10 signed deliveries a second, each timed to its 202) runs
on the same core in a process of its own, so that the viewers' reading does not delay its
clock.

Two phases, the same load but the viewers: without them, then with them. Reported: the bot's
CPU (percent of one core) in each, the difference, the events each viewer received, and the
202 latency (p50, p99, max) in each phase.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from bench import payload, servers
from bot.runs import callbacks
from bot.web.session import SESSION_COOKIE, Sealer
from tests.fakes.github import FakeGitHub

SECRET = "run-pages-bench-secret"
OWNER = "octo-org"
EVENTS_PER_SECOND = 2.0  # per run: a busy agent's messages, tool calls and output lines
WEBHOOKS_PER_SECOND = 10.0
USAGE_EVERY = 6  # events per model response: each changes the run's header for its viewers


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


class Load:
    """The sandboxes and the viewers, in this process (the webhook sender has its own)."""

    def __init__(self, bot: str, internal: str, key: bytes, run_ids: list[int],
                 database: Path) -> None:
        self.bot, self.internal, self.key, self.run_ids = bot, internal, key, run_ids
        self.database = database
        self.seq = dict.fromkeys(run_ids, 0)
        self.received: list[int] = []
        self.stop = asyncio.Event()

    async def sandbox(self, session: aiohttp.ClientSession, run_id: int) -> None:
        headers = {"Authorization": "Bearer " + callbacks.run_token(self.key, run_id)}
        while not self.stop.is_set():
            self.seq[run_id] += 1
            seq = self.seq[run_id]
            kind = ("message", "tool", "log")[seq % 3]
            data: dict[str, Any] = {"text": f"step {seq}: " + "reading the code " * 8}
            if kind == "tool":
                data = {"name": "Bash", "status": "completed", "id": f"t{seq}",
                        "output": "\n".join(f"test_{i} PASSED" for i in range(30))}
            elif kind == "log":
                data = {"source": "agent", "stream": "stdout", "text": data["text"]}
            event = {"seq": seq, "ts": time.time(), "kind": kind, "data": data}
            async with session.post(f"{self.internal}/internal/runs/{run_id}/events",
                                    json=[event], headers=headers) as response:
                assert response.status == 200, await response.text()
            if seq % USAGE_EVERY == 0:  # a model response booked, as the gateway does
                await asyncio.to_thread(self._book_usage, run_id)
            await asyncio.sleep(1 / EVENTS_PER_SECOND)

    def _book_usage(self, run_id: int) -> None:
        with sqlite3.connect(self.database, timeout=5) as conn:
            conn.execute(
                "INSERT INTO run_usage (run_id, at, provider, model, input_tokens, "
                "output_tokens, cache_read_tokens, cache_write_tokens, cost) "
                "VALUES (?, ?, 'anthropic', 'claude-sonnet-4-5', 1200, 300, 5000, 0, 0.012)",
                (run_id, datetime.datetime.now(datetime.UTC).isoformat(sep=" ")))

    async def viewer(self, cookie: str, run_id: int) -> None:
        count = 0
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(cookie_jar=jar,
                                         timeout=aiohttp.ClientTimeout(total=None)) as session:
            session.cookie_jar.update_cookies({SESSION_COOKIE: cookie},
                                              aiohttp.client.URL(self.bot))
            async with session.get(f"{self.bot}/runs/{run_id}/events",
                                   headers={"Last-Event-ID": str(self.seq[run_id])}
                                   ) as response:
                assert response.status == 200, response.status
                stopping = asyncio.ensure_future(self.stop.wait())
                tail = b""
                try:
                    while True:
                        # What arrived, whole (a line at a time cost this process a task
                        # per line, and its loop is the sandboxes' and the fake GitHub's).
                        chunk = asyncio.ensure_future(response.content.readany())
                        done, _ = await asyncio.wait({chunk, stopping},
                                                     return_when=asyncio.FIRST_COMPLETED)
                        if stopping in done:
                            chunk.cancel()
                            break
                        lines = (tail + chunk.result()).split(b"\n")
                        tail = lines.pop()
                        count += sum(line.startswith(b"id: ") for line in lines)
                        if not chunk.result():
                            break
                finally:
                    stopping.cancel()
        self.received.append(count)


async def send_webhooks(bot: str, warmup: float, duration: float) -> list[float]:
    """10 signed deliveries a second, each timed to its 202: the seconds each took after the
    warm-up. Run in a process of its own (`--sender`), so that what it measures is the bot's
    answer and not this process's event loop, busy with the viewers' streams."""
    body = payload.encode(payload.issues_labeled())
    latencies: list[float] = []
    # An experiment: each delivery's wall time and milliseconds to its 202, appended here.
    sends = (open(os.environ["BENCH_SENDS_FILE"], "a",  # noqa: SIM115, ASYNC230 - once
                  encoding="utf-8") if os.environ.get("BENCH_SENDS_FILE") else None)
    began = time.monotonic()
    async with aiohttp.ClientSession() as session:
        while (elapsed := time.monotonic() - began) < warmup + duration:
            # A replay of the same body is refused as one; vary it like real traffic.
            unique = body.replace(b'"action":"labeled"',
                                  f'"action":"labeled","n":"{uuid.uuid4()}"'.encode(), 1)
            headers = {"Content-Type": "application/json", "X-GitHub-Event": "issues",
                       "X-GitHub-Delivery": str(uuid.uuid4()),
                       "X-Hub-Signature-256": payload.sign(unique, SECRET)}
            started = time.perf_counter()
            async with session.post(f"{bot}/webhook", data=unique,
                                    headers=headers) as response:
                assert response.status == 202, response.status
            if elapsed >= warmup:
                latencies.append(time.perf_counter() - started)
                if sends is not None:
                    sends.write(f"{time.time():.3f} {latencies[-1] * 1000:.2f}\n")
            await asyncio.sleep(1 / WEBHOOKS_PER_SECOND)
    if sends is not None:
        sends.close()
    return latencies


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


async def phase(load: Load, bot_pid: int, duration: float, viewers: list[tuple[str, int]],
                load_cpu: str, sender_first: bool = False,
                sends_file: str | None = None) -> dict[str, Any]:
    load.stop.clear()
    load.received = []
    warmup = 3.0  # everyone connected and caught up
    realtime = ["chrt", "-f", "10"] if sender_first else []
    sender = await asyncio.create_subprocess_exec(
        *realtime, "taskset", "-c", load_cpu, sys.executable, "-m", "bench.run_pages", "--sender",
        load.bot, "--duration", str(duration), "--warmup", str(warmup),
        cwd=servers.REPO, env={**os.environ, "PYTHONPATH": str(servers.REPO),
                               **({"BENCH_SENDS_FILE": sends_file} if sends_file else {})},
        stdout=asyncio.subprocess.PIPE)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as session:
        tasks = [asyncio.create_task(load.sandbox(session, r)) for r in load.run_ids]
        watchers = [asyncio.create_task(load.viewer(c, r)) for c, r in viewers]
        await asyncio.sleep(warmup)
        before = servers.cpu_seconds(bot_pid)
        started = time.monotonic()
        out, _ = await sender.communicate()
        cpu = (servers.cpu_seconds(bot_pid) - before) / (time.monotonic() - started) * 100
        assert sender.returncode == 0, "the webhook sender failed"
        latencies = json.loads(out)
        load.stop.set()
        await asyncio.gather(*tasks, *watchers)
    return {"cpu_percent": round(cpu, 1), "viewers": len(viewers),
            "events_per_viewer": round(statistics.mean(load.received), 1) if load.received
            else 0, "webhook_p50_ms": round(percentile(latencies, 50) * 1000, 2),
            "webhook_p99_ms": round(percentile(latencies, 99) * 1000, 2),
            "webhook_max_ms": round(max(latencies) * 1000, 2), "webhooks": len(latencies)}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="agentbot-run-pages-"))
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    fake = FakeGitHub(key, git_root=workdir / "github")
    fake.allow_violations()
    fake.add_installation(7, OWNER)
    fake.add_repo(OWNER, "widgets")
    github_runner, fake.url = await serve(fake.app)
    bot_port, internal_port = servers.free_port(), servers.free_port()
    env = {**{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")},
           "PYTHONPATH": str(servers.REPO), "GITHUB_APP_ID": str(fake.app_id),
           "GITHUB_PRIVATE_KEY": fake.private_key_pem, "GITHUB_WEBHOOK_SECRET": SECRET,
           "GITHUB_API_URL": fake.url, "GITHUB_CLIENT_ID": fake.oauth_client_id,
           "GITHUB_CLIENT_SECRET": fake.oauth_client_secret,
           "AGENTBOT_DATABASE_URL": f"sqlite+aiosqlite:///{workdir / 'bot.db'}",
           "AGENTBOT_PORT": str(bot_port), "AGENTBOT_INTERNAL_PORT": str(internal_port),
           "AGENTBOT_LOG_LEVEL": "warning", "AGENTBOT_REDELIVER_INTERVAL": "0",
           "BENCH_RUNS": str(args.runs), "BENCH_REPO": f"{OWNER}/widgets",
           **({"BENCH_WAKE_SLICE": str(args.wake_slice)} if args.wake_slice else {}),
           **({"BENCH_SWITCH_INTERVAL": str(args.switch_interval)}
              if args.switch_interval else {}),
           **({"BENCH_SLOW_CALLBACK_MS": str(args.slow_callback_ms)}
              if args.slow_callback_ms else {}),
           **({"BENCH_LAG_FILE": args.lag_file} if args.lag_file else {}),
           **({"BENCH_COMMIT_FILE": args.commit_file} if args.commit_file else {})}
    log = (workdir / "bot.log").open("wb")
    print(f"the bot's log: {workdir / 'bot.log'}", file=sys.stderr)
    process = await asyncio.create_subprocess_exec(
        "taskset", "-c", args.server_cpu, sys.executable, "-m", "bench.run_pages_server",
        cwd=workdir, env=env, stdout=asyncio.subprocess.PIPE, stderr=log)
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 60)
        run_ids = json.loads(line)["runs"]
        bot = f"http://127.0.0.1:{bot_port}"
        internal = f"http://127.0.0.1:{internal_port}"
        load = Load(bot, internal, callbacks.callback_key(fake.private_key_pem), run_ids,
                    workdir / "bot.db")
        sealer = Sealer(fake.oauth_client_secret)
        viewers = []
        for n in range(args.viewers):
            login = f"viewer{n}"
            token = fake.issue_user_token(login)
            user = fake.state.user(login)
            cookie = sealer.seal({"login": login, "id": user.id, "token": token,
                                  "exp": time.time() + 3600})
            viewers.append((cookie, run_ids[n % len(run_ids)]))
        pinned = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {int(args.load_cpu)})
        try:
            first = args.sender_first
            without = await phase(load, process.pid, args.duration, [], args.load_cpu, first,
                                  args.sends_file)
            with_viewers = await phase(load, process.pid, args.duration, viewers,
                                       args.load_cpu, first, args.sends_file)
        finally:
            os.sched_setaffinity(0, pinned)
    finally:
        if process.returncode is None:
            process.terminate()
            await process.wait()
        log.close()
        await github_runner.cleanup()
    return {"runs": args.runs, "events_per_second": args.runs * EVENTS_PER_SECOND,
            "without_viewers": without, "with_viewers": with_viewers,
            "cpu_added_percent": round(with_viewers["cpu_percent"] - without["cpu_percent"], 1)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--viewers", type=int, default=200)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--server-cpu", default="0")
    parser.add_argument("--load-cpu", default="1")
    parser.add_argument("--wake-slice", type=int, default=0,
                        help="viewers woken per turn of the bot's loop (bot.web.stream.WAKE_SLICE)")
    parser.add_argument("--switch-interval", type=float, default=0.0,
                        help="the bot's sys.setswitchinterval, in seconds (Python's is 0.005)")
    parser.add_argument("--slow-callback-ms", type=float, default=0.0,
                        help="run the bot on asyncio's loop in debug mode and log each step "
                             "that held the loop this long (to bot.log in the work directory)")
    parser.add_argument("--lag-file", help="the bot writes each time its loop came back over "
                        "1 ms late to a 1 ms sleep (wall time, ms late) to this file")
    parser.add_argument("--commit-file", help="the bot writes each delivery batch's commit "
                        "(wall time, rows, ms, WAL bytes after) to this file")
    parser.add_argument("--sends-file", help="the sender appends each delivery (wall time, ms "
                        "to its 202) to this file, both phases")
    parser.add_argument("--sender-first", action="store_true",
                        help="run the webhook sender at a real-time priority (chrt -f 10), so "
                             "that the load on its core does not delay its clock (needs root)")
    parser.add_argument("--sender", metavar="BOT_URL", help=argparse.SUPPRESS)
    parser.add_argument("--warmup", type=float, default=3.0, help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.sender:  # the webhook sender's own process, started by `phase`
        print(json.dumps(asyncio.run(send_webhooks(arguments.sender, arguments.warmup,
                                                   arguments.duration))))
    else:
        print(json.dumps(asyncio.run(main(arguments)), indent=2))
