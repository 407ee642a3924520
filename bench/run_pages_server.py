"""The bot as bench/run_pages.py measures it: the public app (intake, dispatch, run pages) and
the internal API, with BENCH_RUNS runs of BENCH_REPO running; no scheduler, so they stay so.

Prints one JSON line, `{"runs": [ids]}`, once both ports answer.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
import time
import uuid

from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.app import BOT_KEY, create_app
from bot.config.settings import load_settings
from bot.logs import configure_logging
from bot.runs import callbacks
from bot.runs.ledger import Created, NewRun, create_run, transition
from bot.store import migrate
from bot.store.tables import RunState, create_engine
from bot.web import stream


async def make_runs(database_url: str, count: int, repo: str) -> list[int]:
    engine = create_engine(database_url)
    await migrate.upgrade(engine)
    ids = []
    for number in range(1, count + 1):
        outcome = await create_run(engine, NewRun(
            installation_id=7, repo_id=1, repo_full_name=repo,
            clone_url=f"https://github.com/{repo}.git", number=number, is_pull_request=False,
            base_ref="main", trigger="label", sender_login="octocat", sender_id=1,
            delivery_id=str(uuid.uuid4()), agent="claude", timeout_seconds=3600,
            title=f"Change {number}"))
        assert isinstance(outcome, Created)
        await transition(engine, outcome.run_id, RunState.STARTING, "bench")
        await transition(engine, outcome.run_id, RunState.RUNNING, "bench")
        ids.append(outcome.run_id)
    await engine.dispose()
    return ids


async def main() -> None:
    settings, problems = load_settings()
    assert settings is not None and not problems, problems
    configure_logging(settings.log_level, settings.log_format)
    run_ids = await make_runs(settings.database_url, int(os.environ["BENCH_RUNS"]),
                              os.environ["BENCH_REPO"])
    if os.environ.get("BENCH_SWITCH_INTERVAL"):  # an experiment: how long a thread holds the GIL
        sys.setswitchinterval(float(os.environ["BENCH_SWITCH_INTERVAL"]))
    if os.environ.get("BENCH_WAKE_SLICE"):  # an experiment: the run pages' wake slice
        stream.WAKE_SLICE = int(os.environ["BENCH_WAKE_SLICE"])
    public = create_app(settings)
    bot = public[BOT_KEY]

    def engine() -> AsyncEngine:
        assert bot.engine is not None
        return bot.engine

    async def no_result(run_id: int, result: callbacks.Result) -> None:
        return None

    internal = web.Application(client_max_size=8 * 1024 * 1024)
    callbacks.add_routes(internal, engine, callbacks.callback_key(
        settings.private_key_pem() or ""), no_result, 1 << 20)
    runners = []
    for app, port in ((public, settings.port), (internal, settings.internal_port)):
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
        runners.append(runner)
    # As `serve` does: what start-up built is frozen out of the cyclic collector's passes.
    gc.collect()
    gc.freeze()
    if os.environ.get("BENCH_COMMIT_FILE"):  # an experiment: how long each delivery commit took
        time_commits(os.environ["BENCH_COMMIT_FILE"], settings.database_url)
    if os.environ.get("BENCH_LAG_FILE"):  # an experiment: when the loop was held, and how long
        asyncio.create_task(watch_loop_lag(os.environ["BENCH_LAG_FILE"]))
    print(json.dumps({"runs": run_ids}), flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        for runner in reversed(runners):
            await runner.cleanup()


async def watch_loop_lag(path: str, tick: float = 0.001, over: float = 0.001) -> None:
    """Write each time the loop came back more than `over` late to a 1 ms sleep: wall time
    and lateness in milliseconds, a line each."""
    with open(path, "w", encoding="utf-8") as out:  # noqa: ASYNC230 - a few lines a second
        flushed = time.monotonic()
        while True:
            before = time.perf_counter()
            await asyncio.sleep(tick)
            late = time.perf_counter() - before - tick
            if late > over:
                out.write(f"{time.time():.3f} {late * 1000:.2f}\n")
            if time.monotonic() - flushed > 1:
                out.flush()
                flushed = time.monotonic()


def time_commits(path: str, database_url: str) -> None:
    """Write each delivery batch's commit to this file: wall time, rows, milliseconds from the
    writer's call to its return, and the size of SQLite's WAL file after it."""
    from bot.intake import writer

    insert = writer._Connection.insert
    wal = database_url.split("///", 1)[-1] + "-wal"
    out = open(path, "w", encoding="utf-8")  # noqa: SIM115 - open for the process's life

    async def timed(self: writer._Connection, rows: list[writer.DeliveryRow]) -> None:
        before = time.perf_counter()
        try:
            await insert(self, rows)
        finally:
            took = (time.perf_counter() - before) * 1000
            # A stat a commit, in an experiment only.
            size = os.stat(wal).st_size if os.path.exists(wal) else 0  # noqa: ASYNC240
            out.write(f"{time.time():.3f} {len(rows)} {took:.2f} {size}\n")
            out.flush()

    writer._Connection.insert = timed  # type: ignore[method-assign]


async def main_watching_slow_steps(seconds: float) -> None:
    """`main` on asyncio's own loop in debug mode: each step that holds the loop longer than
    `seconds` is logged (an experiment: what delays a webhook now and then)."""
    asyncio.get_running_loop().slow_callback_duration = seconds
    await main()


if __name__ == "__main__":
    if os.environ.get("BENCH_SLOW_CALLBACK_MS"):
        slow = float(os.environ["BENCH_SLOW_CALLBACK_MS"]) / 1000
        asyncio.run(main_watching_slow_steps(slow), debug=True)
    else:
        import uvloop  # as `agentbot serve` runs

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main())
