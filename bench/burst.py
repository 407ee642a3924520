"""A burst of triggers: N issues labelled within a second, against `agentbot serve` with the
Kubernetes executor, the suite's GitHub and Kubernetes API doubles (as strict as in the
tests) in this process, and the bot pinned to one core.

    python -m bench.burst --n 100 --n 1000            # GitHub's content limit not emulated
    python -m bench.burst --n 1000 --limit            # 403 retry-after 60 past 80 a minute

Reports per N: 202 -> Job created (p50, p99), first webhook -> every Job, the most
content-creating GitHub requests in any 60 s, GitHub's secondary-limit refusals, the bot's
RSS with N runs active and its idle CPU, and the doubles' schema violations.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from bench import servers
from tests.fakes import payloads as p
from tests.fakes.github import FakeGitHub
from tests.fakes.kubeapi import KubeAPI

SECRET = "burst-webhook-secret"
OWNER, REPO = p.OWNER, p.REPO
NAMESPACE = "agentbot"


@dataclass
class Outcome:
    n: int
    limit: bool
    accepted_p50: float
    accepted_p99: float
    job_p50: float
    job_p99: float
    all_jobs: float | None
    jobs: int
    peak_writes_60s: int
    refusals: int
    rss_mib: float
    idle_cpu: float
    violations: int

    def row(self) -> str:
        done = f"{self.all_jobs:.1f} s" if self.all_jobs is not None else \
            f"{self.jobs}/{self.n} Jobs"
        return (f"| {self.n} | {'yes' if self.limit else 'no'} | "
                f"{self.job_p50:.2f} / {self.job_p99:.2f} s | {done} | {self.peak_writes_60s} | "
                f"{self.refusals} | {self.rss_mib:.0f} MiB | {self.idle_cpu:.1f} % | "
                f"{self.violations} |")


HEADER = ("| N | GitHub limit emulated | 202 -> Job p50 / p99 | first webhook -> all Jobs | "
          "peak content writes in 60 s | secondary-limit refusals | RSS, N active | idle CPU | "
          "double violations |\n|---|---|---|---|---|---|---|---|---|")


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def peak_in_window(times: list[float], window: float = 60.0) -> int:
    """The most events within any `window` seconds."""
    ordered, best, start = sorted(times), 0, 0
    for end, at in enumerate(ordered):
        while ordered[start] <= at - window:
            start += 1
        best = max(best, end - start + 1)
    return best


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Jobs:
    """Records when the Kubernetes double created each Job (by run id)."""

    def __init__(self) -> None:
        self.created: dict[int, float] = {}

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        response = await handler(request)
        if request.method == "POST" and request.path.endswith("/jobs") \
                and response.status == 201:
            name = json.loads(await request.read())["metadata"]["name"]
            self.created[int(name.rsplit("-", 1)[1])] = time.monotonic()
        return response


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    port = servers.free_port()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=2048).start()
    return runner, f"http://127.0.0.1:{port}"


def kubeconfig(path: Path, url: str) -> Path:
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "bench",
        "clusters": [{"name": "double", "cluster": {"server": url}}],
        "users": [{"name": "bench", "user": {"token": "bench-token"}}],
        "contexts": [{"name": "bench", "context": {"cluster": "double", "user": "bench",
                                                   "namespace": NAMESPACE}}]}))
    return path


async def burst(n: int, limit: bool, cpu: str, settle: float, workdir: Path,
                experiments: tuple[str, ...] = ()) -> Outcome:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    fake = FakeGitHub(key, git_root=workdir / "github")
    fake.allow_violations()  # counted and reported, not raised
    fake.add_installation(p.INSTALLATION_ID, OWNER)
    fake.add_repo(OWNER, REPO, repo_id=p.REPO_ID)
    fake.add_collaborator(f"{OWNER}/{REPO}", "octocat", "maintain")
    for number in range(1, n + 1):
        fake.add_issue(f"{OWNER}/{REPO}", number, title=f"Change {number}", body="Please.")
    if limit:
        fake.limit_content(80, 60.0)
    kube = KubeAPI(namespace=NAMESPACE)
    jobs = Jobs()
    kube.app.middlewares.append(jobs.middleware)
    github_runner, fake.url = await serve(fake.app)
    kube_runner, kube.url = await serve(kube.app)
    bot = servers.agentbot(workdir, database_url=f"sqlite+aiosqlite:///{workdir / 'bot.db'}",
                           secret=SECRET, private_key=fake.private_key_pem, cpu=cpu,
                           experiments=experiments)
    bot.env.update({
        "GITHUB_APP_ID": str(fake.app_id), "GITHUB_API_URL": fake.url,
        "AGENTBOT_EXECUTOR": "kubernetes", "KUBECONFIG": str(kubeconfig(
            workdir / "kubeconfig", kube.url)),
        "AGENTBOT_NAMESPACE": NAMESPACE,
        "AGENTBOT_SANDBOX_IMAGE": "ghcr.io/agentbot/agentbot-sandbox:0.1.0",
        "AGENTBOT_INTERNAL_URL": f"http://127.0.0.1:{bot.env['AGENTBOT_INTERNAL_PORT']}",
        "AGENTBOT_GATEWAY_URL": "http://agentbot-gateway:8082",
        "AGENTBOT_MAX_CONCURRENT_RUNS": str(max(n, 2000)),
        "AGENTBOT_MAX_RUNS_PER_INSTALLATION": str(max(n, 2000)),
        "AGENTBOT_REDELIVER_INTERVAL": "0",
    })
    await asyncio.to_thread(bot.start)
    accepted: dict[int, float] = {}
    try:
        bodies = []
        for number in range(1, n + 1):
            body = p.encode(p.issues_labeled(number=number, title=f"Change {number}",
                                             body="Please."))
            bodies.append((number, body, p.webhook_headers("issues", str(uuid.uuid4()), body,
                                                           SECRET)))
        cpu_bot, cpu_doubles = servers.cpu_seconds(bot.pid), time.process_time()
        connector = aiohttp.TCPConnector(limit=200)
        async with aiohttp.ClientSession(connector=connector) as session:
            start = time.monotonic()
            sent: dict[int, float] = {}

            async def post(number: int, body: bytes, headers: dict[str, str]) -> None:
                await asyncio.sleep(start + (number - 1) / n - time.monotonic())
                sent[number] = time.monotonic()
                async with session.post(f"{bot.url}/webhook", data=body,
                                        headers=headers) as response:
                    if response.status == 202:
                        accepted[number] = time.monotonic()

            await asyncio.gather(*(post(*item) for item in bodies))
        first = min(sent.values())
        deadline = first + settle
        while time.monotonic() < deadline and len(jobs.created) < n:  # noqa: ASYNC110
            await asyncio.sleep(0.2)  # the Jobs come from another process: poll
        all_jobs = (max(jobs.created.values()) - first) if len(jobs.created) >= n else None
        busy = time.monotonic() - first
        print(f"    over the {busy:.1f} s from the first webhook: bot CPU "
              f"{servers.cpu_seconds(bot.pid) - cpu_bot:.1f} s, doubles and sender CPU "
              f"{time.process_time() - cpu_doubles:.1f} s", file=sys.stderr)
        rss = rss_mib(bot.pid)
        # Idle CPU with N runs active: their pods never start, so nothing should happen.
        await asyncio.sleep(max(deadline - time.monotonic(), 0))
        before = servers.cpu_seconds(bot.pid)
        await asyncio.sleep(10)
        idle = (servers.cpu_seconds(bot.pid) - before) / 10 * 100
    finally:
        await asyncio.to_thread(bot.stop)
        await kube_runner.cleanup()
        await github_runner.cleanup()
    run_numbers = await asyncio.to_thread(_run_numbers, workdir / "bot.db")
    latencies = [jobs.created[run_id] - accepted[number]
                 for run_id, number in run_numbers.items()
                 if run_id in jobs.created and number in accepted]
    answers = [accepted[k] - sent[k] for k in accepted]
    writes = [at for times in fake._content_sent.values() for at in times]  # noqa: SLF001
    made = collections.Counter(r.operation for r in fake.requests
                               if r.method != "GET" and r.path.split("/")[1] != "app"
                               and r.path != "/installation/token")
    print("    content-creating requests: " + ", ".join(
        f"{count} {operation}" for operation, count in made.most_common()), file=sys.stderr)
    return Outcome(n, limit, percentile(answers, 0.5), percentile(answers, 0.99),
                   percentile(latencies, 0.5), percentile(latencies, 0.99), all_jobs,
                   len(jobs.created), peak_in_window(writes), fake.content_refusals, rss, idle,
                   len(fake.violations) + len(kube.invalid_bodies))


def _run_numbers(db: Path) -> dict[int, int]:
    import sqlite3

    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT id, number FROM runs").fetchall())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, action="append", help="issues per burst (repeatable)")
    parser.add_argument("--limit", action="store_true",
                        help="emulate GitHub's secondary limit (80 content writes a minute)")
    parser.add_argument("--both", action="store_true", help="each N without and with it")
    parser.add_argument("--cpu", default="0", help="the core the bot is pinned to")
    parser.add_argument("--experiment", action="append", default=[],
                        help="a switch of bench/experiments.py patched into the bot (trace)")
    parser.add_argument("--keep", type=Path, help="keep the bot's log and database here")
    parser.add_argument("--settle", type=float, default=90.0,
                        help="seconds from the first webhook that the run is watched")
    args = parser.parse_args(argv)
    sizes = args.n or [100]
    limits = [False, True] if args.both else [args.limit]
    # The doubles and the sender share the other core(s).
    others = sorted(set(range(os.cpu_count() or 1)) - {int(args.cpu)})
    if others:
        os.sched_setaffinity(0, others)
    print(HEADER)
    for n in sizes:
        for limit in limits:
            with tempfile.TemporaryDirectory(prefix="agentbot-burst-") as tmp:
                workdir = Path(tmp)
                if args.keep:
                    workdir = args.keep / f"n{n}{'-limit' if limit else ''}"
                    workdir.mkdir(parents=True, exist_ok=True)
                outcome = asyncio.run(burst(n, limit, args.cpu, args.settle, workdir,
                                            tuple(args.experiment)))
            print(outcome.row(), flush=True)
            print(f"    webhook answers p50 {outcome.accepted_p50 * 1000:.0f} ms, p99 "
                  f"{outcome.accepted_p99 * 1000:.0f} ms", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
