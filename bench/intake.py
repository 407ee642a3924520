"""Intake benchmark: agentbot (SQLite, PostgreSQL) against a minimal Probot app, one run."""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench import databases, payload, servers
from bench.loadgen import Load, run_wrk

TARGETS = ("probot", "agentbot-sqlite", "agentbot-postgres")
# The issue's bar: at least 1.5x Probot's deliveries/s with a p99 no higher than Probot's.
THROUGHPUT_FACTOR = 1.5


@dataclass
class Row:
    """One server's figures and the storage check."""

    target: str
    store: str
    ok_status: int
    load: Load
    server_cpu: float  # share of one core the server process used during the measurement
    accepted: int = 0  # ok answers over warm-up and measurement
    in_flight: int = 0  # written but unanswered when wrk stopped
    stored: int | None = None  # rows in `deliveries` for this row's ids (agentbot only)
    problems: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.load.rate(self.ok_status)


@dataclass(frozen=True)
class Options:
    duration: float
    warmup: float
    connections: int
    server_cpu: str
    load_cpu: str
    label: str
    postgres_url: str


def measure(server: servers.Server, opts: Options, body_file: Path, signature: str,
            target: str, store: str, ok_status: int,
            database: databases.Database | None) -> Row:
    """Warm up, measure, then check that every accepted delivery was stored."""
    def load(prefix: str, seconds: float) -> Load:
        return run_wrk(server.url + "/webhook", body_file=body_file, signature=signature,
                       prefix=prefix, event="issues", seconds=seconds,
                       connections=opts.connections, threads=1, cpu=opts.load_cpu)

    warm = load(secrets.token_hex(4), opts.warmup) if opts.warmup > 0 else None
    cpu_before, wall_before = servers.cpu_seconds(server.pid), time.monotonic()
    main = load(secrets.token_hex(4), opts.duration)
    cpu = (servers.cpu_seconds(server.pid) - cpu_before) / (time.monotonic() - wall_before)
    row = Row(target, store, ok_status, main, cpu)
    runs = [r for r in (warm, main) if r is not None]
    row.accepted = sum(r.statuses.get(ok_status, 0) for r in runs)
    row.in_flight = sum(r.in_flight for r in runs)
    for r in runs:
        other = {s: n for s, n in r.statuses.items() if s != ok_status}
        if other:
            row.problems.append(f"answers other than {ok_status}: {other}")
        if any(r.errors.values()):
            row.problems.append(f"socket errors: {r.errors}")
    if database is not None:
        time.sleep(1.0)  # let requests cut off by wrk's deadline finish their commit
        row.stored = database.count_deliveries([r.prefix for r in runs])
        if not row.accepted <= row.stored <= row.accepted + row.in_flight:
            row.problems.append(f"stored {row.stored} deliveries for {row.accepted} "
                                f"accepted (+{row.in_flight} cut off by the deadline)")
    return row


@contextlib.contextmanager
def running(server: servers.Server) -> Iterator[servers.Server]:
    server.start()
    try:
        yield server
    finally:
        server.stop()


def run(targets: list[str], opts: Options, workdir: Path) -> list[Row]:
    """Every requested target, one after the other, on the same payload and secret."""
    secret = secrets.token_urlsafe(32)
    private_key = servers.rsa_private_key_pem()
    body = payload.encode(payload.issues_labeled(opts.label))
    body_file = workdir / "issues.labeled.json"
    body_file.write_bytes(body)
    signature = payload.sign(body, secret)
    rows: list[Row] = []
    for target in targets:
        print(f"-- {target}: {opts.warmup:g} s warm-up, {opts.duration:g} s measured",
              file=sys.stderr, flush=True)
        if target == "probot":
            server = servers.probot(workdir, secret=secret, private_key=private_key,
                                    cpu=opts.server_cpu)
            with running(server):
                rows.append(measure(server, opts, body_file, signature, target,
                                    "memory (answers after its handler)", 200, None))
            continue
        with contextlib.ExitStack() as stack:
            if target == "agentbot-sqlite":
                sub = workdir / "sqlite"
                sub.mkdir()
                database = databases.sqlite(sub)
            else:
                sub = workdir / "postgres"
                sub.mkdir()
                database = stack.enter_context(databases.postgres(opts.postgres_url))
            server = servers.agentbot(sub, database_url=database.url, secret=secret,
                                      private_key=private_key, cpu=opts.server_cpu)
            stack.enter_context(running(server))
            rows.append(measure(server, opts, body_file, signature, "agentbot",
                                database.label, 202, database))
    return rows


def table(rows: list[Row]) -> str:
    """The figures as a Markdown table."""
    lines = [
        "| server | store | deliveries/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms "
        "| server CPU | accepted | stored | check |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lat = r.load.latency_ms
        stored = "-" if r.stored is None else f"{r.stored:,}"
        check = "; ".join(r.problems) or "ok"
        lines.append(
            f"| {r.target} | {r.store} | {r.rate:,.0f} | {lat['p50']:.2f} | {lat['p90']:.2f} "
            f"| {lat['p99']:.2f} | {lat['p999']:.2f} | {lat['max']:.1f} | {r.server_cpu:.0%} "
            f"| {r.accepted:,} | {stored} | {check} |")
    return "\n".join(lines)


def verdicts(rows: list[Row]) -> list[str]:
    """Each agentbot row against the issue's bar, relative to the Probot row."""
    peer = next((r for r in rows if r.target == "probot"), None)
    if peer is None or peer.rate == 0:
        return []
    out = []
    for r in rows:
        if r.target == "probot":
            continue
        factor = r.rate / peer.rate
        p99, peer_p99 = r.load.latency_ms["p99"], peer.load.latency_ms["p99"]
        met = factor >= THROUGHPUT_FACTOR and p99 <= peer_p99 and not r.problems
        out.append(f"agentbot on {r.store}: {factor:.2f}x Probot's throughput, p99 "
                   f"{p99:.2f} ms vs {peer_p99:.2f} ms: target {'met' if met else 'MISSED'}")
    return out


def environment() -> dict[str, str]:
    """What the figures were measured on."""
    def output(*argv: str) -> str:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, check=False)
        except OSError:
            return "missing"
        return (done.stdout or done.stderr).strip().splitlines()[0]

    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    probot_pkg = servers.PROBOT_DIR / "node_modules" / "probot" / "package.json"
    probot_version = (json.loads(probot_pkg.read_text())["version"]
                      if probot_pkg.is_file() else "not installed")
    return {"cpu": cpu, "kernel": platform.release(), "python": platform.python_version(),
            "node": output("node", "--version"), "probot": probot_version,
            "wrk": output("wrk", "--version")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.intake", description=__doc__)
    parser.add_argument("--targets", default=",".join(TARGETS),
                        help=f"comma-separated, from {', '.join(TARGETS)}")
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=3.0, help="warm-up seconds")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--server-cpu", default="0", help="taskset list for the servers")
    parser.add_argument("--load-cpu", default="1", help="taskset list for wrk")
    parser.add_argument("--label", default="bug",
                        help="the label added in the payload (agentbot's trigger is `agent`)")
    parser.add_argument("--postgres-url", default=databases.DEFAULT_POSTGRES,
                        help="server on which a fresh database is created and dropped")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = parser.parse_args(argv)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = set(targets) - set(TARGETS)
    if unknown:
        parser.error(f"unknown targets: {', '.join(sorted(unknown))}")
    opts = Options(args.duration, args.warmup, args.connections, args.server_cpu,
                   args.load_cpu, args.label, args.postgres_url)

    workdir = Path(tempfile.mkdtemp(prefix="agentbot-bench-"))
    try:
        rows = run(targets, opts, workdir)
    except BaseException:
        # The servers' logs are the only account of what went wrong: keep them.
        print(f"work directory kept: {workdir}", file=sys.stderr)
        raise
    if args.keep:
        print(f"work directory kept: {workdir}", file=sys.stderr)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    env = environment()
    print(", ".join(f"{k}: {v}" for k, v in env.items()))
    print(f"{args.connections} connections, {args.warmup:g} s warm-up, {args.duration:g} s "
          f"measured, server on CPU {args.server_cpu}, wrk on CPU {args.load_cpu}\n")
    print(table(rows))
    for line in verdicts(rows):
        print(line)
    if args.json is not None:
        args.json.write_text(json.dumps(
            {"environment": env, "options": asdict(opts) | {"postgres_url": "(not kept)"},
             "rows": [asdict(r) | {"rate": r.rate} for r in rows]}, indent=2))
    return 1 if any(r.problems for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
