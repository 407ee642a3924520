"""Intake benchmark: agentbot (SQLite, PostgreSQL) against a minimal Probot app, one run."""

from __future__ import annotations

import argparse
import contextlib
import json
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from bench import databases, payload, report, servers
from bench.loadgen import Load, run_wrk

# The names only: importing bench.experiments would import bot into the harness.
EXPERIMENTS = ("no-inbox", "no-parse", "no-gc")

TARGETS = ("probot", "aiohttp-baseline", "agentbot-sqlite", "agentbot-postgres")
# Requests that wrk's deadline cut off may still be committing; give them this long.
SETTLE_SECONDS = 1.0


@dataclass(frozen=True)
class Options:
    duration: int
    warmup: int
    connections: int
    server_cpu: str
    load_cpu: str
    label: str
    postgres_url: str
    keep: bool = False  # keep SQLite files and logs for a look afterwards
    experiments: tuple[str, ...] = ()  # bench/experiments.py switches for agentbot rows


@dataclass(frozen=True)
class Fixture:
    """What every server in one run shares: the App's secret and key, the signed body."""

    secret: str
    private_key: str
    body_file: Path
    signature: str


def _cpus(spec: str) -> set[int]:
    cpus: set[int] = set()
    for part in spec.split(","):
        low, _, high = part.partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    return cpus


def measure(server: servers.Server, opts: Options, fixture: Fixture, target: str,
            store: str, ok_status: int, database: databases.Database | None) -> report.Row:
    """Warm up, measure, then check that every accepted delivery was stored."""
    def load(seconds: int) -> Load:
        return run_wrk(server.url + "/webhook", body_file=fixture.body_file,
                       signature=fixture.signature, prefix=secrets.token_hex(4),
                       event="issues", seconds=seconds, connections=opts.connections,
                       threads=1, cpu=opts.load_cpu)

    warm = load(opts.warmup) if opts.warmup > 0 else None
    cpus = _cpus(opts.server_cpu)
    own_before, (busy_before, total_before) = servers.cpu_seconds(server.pid), \
        report.cpu_busy(cpus)
    main = load(opts.duration)
    own = servers.cpu_seconds(server.pid) - own_before
    busy_after, total_after = report.cpu_busy(cpus)
    elapsed = (total_after - total_before) / len(cpus)
    row = report.Row(target, store, ok_status, main, server_cpu=own / elapsed,
                     other_cpu=max(0.0, (busy_after - busy_before - own) / elapsed))
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
        time.sleep(SETTLE_SECONDS)
        row.stored = database.count_deliveries([r.prefix for r in runs])
        # Every accepted delivery is stored; beyond those, at most the ones in flight
        # when wrk hung up (their 202 was never read).
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


def run_target(target: str, opts: Options, fixture: Fixture, workdir: Path) -> report.Row:
    """Start one server on a fresh store, measure it, stop it, drop the store."""
    if target == "probot":
        server = servers.probot(workdir, secret=fixture.secret,
                                private_key=fixture.private_key, cpu=opts.server_cpu)
        with running(server):
            return measure(server, opts, fixture, target, "none (answers after its handler)",
                           200, None)
    if target == "aiohttp-baseline":
        server = servers.aiohttp_baseline(workdir, secret=fixture.secret, cpu=opts.server_cpu)
        with running(server):
            return measure(server, opts, fixture, target, "none (signature check only)", 202,
                           None)
    sub = Path(tempfile.mkdtemp(prefix=f"{target}-", dir=workdir))
    with contextlib.ExitStack() as stack:
        if target == "agentbot-sqlite":
            database = databases.sqlite(sub)
        else:
            database = stack.enter_context(databases.postgres(opts.postgres_url))
        server = servers.agentbot(sub, database_url=database.url, secret=fixture.secret,
                                  private_key=fixture.private_key, cpu=opts.server_cpu,
                                  experiments=opts.experiments)
        stack.enter_context(running(server))
        label = database.label
        if opts.experiments:
            label += f" + {'+'.join(opts.experiments)}"
        row = measure(server, opts, fixture, target, label, 202, database)
    if target == "agentbot-sqlite" and not opts.keep:
        shutil.rmtree(sub, ignore_errors=True)  # a 20 s run writes gigabytes
    return row


def run(targets: list[str], opts: Options, workdir: Path, repeat: int) -> list[report.Row]:
    """Every target, interleaved `repeat` times, on one payload, secret and key."""
    body = payload.encode(payload.issues_labeled(opts.label))
    body_file = workdir / "issues.labeled.json"
    body_file.write_bytes(body)
    secret = secrets.token_urlsafe(32)
    fixture = Fixture(secret, servers.rsa_private_key_pem(), body_file,
                      payload.sign(body, secret))
    rows = []
    for round_ in range(1, repeat + 1):
        for target in targets:
            print(f"-- {target} (round {round_}/{repeat}): {opts.warmup:g} s warm-up, "
                  f"{opts.duration:g} s measured", file=sys.stderr, flush=True)
            rows.append(run_target(target, opts, fixture, workdir))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.intake", description=__doc__)
    parser.add_argument("--targets", default=",".join(TARGETS),
                        help=f"comma-separated, from {', '.join(TARGETS)}")
    parser.add_argument("--duration", type=int, default=20, help="measured seconds (whole)")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up seconds (whole; 0: none)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds over all targets, interleaved; verdicts use medians")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--server-cpu", default="0", help="taskset CPU list for the servers")
    parser.add_argument("--load-cpu", default="1", help="taskset CPU list for wrk")
    parser.add_argument("--label", default="bug",
                        help="the label the payload adds (agentbot's trigger label is `agent`)")
    parser.add_argument("--postgres-url", default=databases.DEFAULT_POSTGRES,
                        help="server on which a fresh database is created and dropped")
    parser.add_argument("--experiment", action="append", default=[], metavar="NAME",
                        help="patch a bench/experiments.py measurement switch into agentbot "
                             "(repeatable): " + ", ".join(EXPERIMENTS))
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = parser.parse_args(argv)
    targets = [t.strip() for t in args.targets.split(",") if t.strip()]
    unknown = set(targets) - set(TARGETS)
    if unknown or not targets:
        parser.error(f"targets must be among {', '.join(TARGETS)}")
    if set(args.experiment) - set(EXPERIMENTS):
        parser.error(f"experiments must be among {', '.join(EXPERIMENTS)}")
    opts = Options(args.duration, args.warmup, args.connections, args.server_cpu,
                   args.load_cpu, args.label, args.postgres_url, args.keep,
                   tuple(args.experiment))

    env = report.environment()
    workdir = Path(tempfile.mkdtemp(prefix="agentbot-bench-"))
    try:
        rows = run(targets, opts, workdir, max(1, args.repeat))
    except BaseException:
        # The servers' logs are the only account of what went wrong: keep them.
        print(f"work directory kept: {workdir}", file=sys.stderr)
        raise
    if args.keep:
        print(f"work directory kept: {workdir}", file=sys.stderr)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    print("; ".join(f"{k}: {v}" for k, v in env.items()))
    size = len(payload.encode(payload.issues_labeled(opts.label)))
    print(f"{size:,} byte issues.labeled body, {opts.connections} "
          f"connections, {opts.warmup:g} s warm-up + {opts.duration:g} s measured per row, "
          f"servers on CPU {opts.server_cpu}, wrk on CPU {opts.load_cpu}\n")
    print(report.table(rows))
    print()
    for line in report.verdicts(rows):
        print(line)
    if args.json is not None:
        args.json.write_text(json.dumps(
            {"environment": env, "options": asdict(opts) | {"postgres_url": "(not kept)"},
             "rows": [asdict(r) | {"rate": r.rate} for r in rows]}, indent=2))
    return 1 if any(r.problems for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
