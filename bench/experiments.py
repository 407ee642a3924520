"""Measurement switches patched into a real `agentbot serve`, to price one part of intake.

Not part of agentbot: each experiment replaces one piece of bot/ at start, so that what that
piece costs can be measured with the same harness on the same machine.
`python -m bench.experiments EXPERIMENT[,EXPERIMENT...]` starts `agentbot serve` with them;
`python -m bench.intake --experiment ...` does that for its agentbot rows.
"""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable
from typing import Any

from bot.intake import inbox, webhook, writer
from bot.store import tables


def no_inbox() -> None:
    """Measurement only: the dispatch worker never claims anything (isolates the intake)."""
    async def drain_once(self: Any) -> int:
        self.alive_at = tables.utcnow()
        return 0

    inbox.Inbox.drain_once = drain_once  # type: ignore[method-assign]


def no_parse() -> None:
    """Measurement only, breaks the contract (400 for a body that is not a JSON object):
    the body is not parsed before the answer; shows what the parse costs."""
    def _delivery(delivery_id: str, event: str, body: bytes) -> writer.DeliveryRow:
        return writer.DeliveryRow(delivery_id, event, "labeled", 49871203, body)

    webhook._delivery = _delivery


def no_gc() -> None:
    """Measurement only: the cyclic garbage collector never runs; shows what its passes cost."""
    gc.disable()


def trace() -> None:
    """Measurement only: wall time of each dispatch, each handler and each GitHub request
    (by method and path template), summed and printed to stderr every 5 s."""
    import asyncio
    import time
    from collections import defaultdict

    from bot.github import client

    totals: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])

    def note(name: str, seconds: float) -> None:
        entry = totals[name]
        entry[0] += 1
        entry[1] += seconds
        entry[2] = max(entry[2], seconds)

    def timed(name_of: Callable[..., str], fn: Any) -> Any:
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.monotonic()
            try:
                return await fn(*args, **kwargs)
            finally:
                note(name_of(*args, **kwargs), time.monotonic() - start)
        return wrapper

    client.GitHubClient._request = timed(  # type: ignore[method-assign]
        lambda self, method, url, *_a, **_k: f"github {method} {client.path_template(url)}",
        client.GitHubClient._request)
    inbox.Inbox._process = timed(lambda *_a, **_k: "dispatch (claimed -> done)",  # type: ignore[method-assign]
                                 inbox.Inbox._process)
    inbox.Inbox.drain_once = timed(lambda *_a, **_k: "inbox batch",  # type: ignore[method-assign]
                                   inbox.Inbox.drain_once)
    inbox.Inbox._yield_to_intake = timed(lambda *_a, **_k: "inbox yields to intake",  # type: ignore[method-assign]
                                         inbox.Inbox._yield_to_intake)

    from bot.commands import triggers, verbs
    from bot.runs import ledger

    for module, names in ((verbs, ("repo_config", "author_writes", "new_run_for",
                                   "refused_by_daily_limits", "start_run")),
                          (ledger, ("create_run",)), (triggers, ("_may_trigger",))):
        for name in names:
            setattr(module, name, timed(lambda *_a, _n=name, **_k: f"call {_n}",
                                        getattr(module, name)))

    async def report() -> None:
        while True:
            await asyncio.sleep(5)
            lines = [f"{n:6d} {total / n * 1000:8.1f} ms avg {most * 1000:8.1f} ms max  {name}"
                     for name, (n, total, most) in sorted(totals.items())]
            print("--- trace\n" + "\n".join(lines), file=sys.stderr, flush=True)

    original = inbox.Inbox.start

    def start(self: Any) -> None:
        original(self)
        self._trace_task = asyncio.get_running_loop().create_task(report())

    inbox.Inbox.start = start  # type: ignore[method-assign]


def wide_inbox() -> None:
    """Measurement only: dispatch claims 64 deliveries at a time and runs 32 at once."""
    inbox.InboxOptions.batch_size = 64  # type: ignore[misc]
    inbox.InboxOptions.concurrency = 32  # type: ignore[misc]
    inbox.InboxOptions.__init__.__defaults__ = tuple(  # type: ignore[misc]
        64 if d == 20 else 32 if d == 8 else d
        for d in inbox.InboxOptions.__init__.__defaults__ or ())


def short_yield() -> None:
    """Measurement only: dispatch yields to a busy intake for at most 0.1 s at a time."""
    import dataclasses

    names = [f.name for f in dataclasses.fields(inbox.InboxOptions)]
    defaults = list(inbox.InboxOptions.__init__.__defaults__ or ())
    defaults[names.index("max_yield_seconds")] = 0.1
    inbox.InboxOptions.__init__.__defaults__ = tuple(defaults)  # type: ignore[misc]


def profile() -> None:
    """Measurement only: CPU time per function in every thread (yappi, installed by hand:
    `pip install yappi`), written to agentbot.prof.txt $AGENTBOT_PROFILE_SECONDS (default 40)
    after start (the bench stops the bot with a deadline that a dump at exit can miss)."""
    import os
    import threading

    import yappi  # type: ignore[import-not-found]

    yappi.set_clock_type("cpu")
    yappi.start()

    def dump() -> None:
        yappi.stop()
        with open("agentbot.prof.txt", "w") as out:
            stats = yappi.get_func_stats()
            stats.sort("ttot")
            stats.print_all(out=out, columns={0: ("name", 90), 1: ("ncall", 10),
                                              2: ("tsub", 8), 3: ("ttot", 8), 4: ("tavg", 8)})
            yappi.get_thread_stats().print_all(out=out)

    threading.Timer(float(os.environ.get("AGENTBOT_PROFILE_SECONDS", "40")), dump).start()


def statements() -> None:
    """Measurement only: how many times each SQL statement ran, by its first 110 characters,
    written to agentbot.sql.txt $AGENTBOT_PROFILE_SECONDS (default 40) after start."""
    import collections
    import os
    import threading

    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    seen: collections.Counter[str] = collections.Counter()

    @event.listens_for(Engine, "before_cursor_execute")
    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen[" ".join(statement.split())[:110]] += 1

    def dump() -> None:
        with open("agentbot.sql.txt", "w") as out:
            for text, n in seen.most_common():
                out.write(f"{n:7d} {text}\n")

    threading.Timer(float(os.environ.get("AGENTBOT_PROFILE_SECONDS", "40")), dump).start()


EXPERIMENTS: dict[str, Callable[[], None]] = {
    "no-inbox": no_inbox, "no-parse": no_parse, "no-gc": no_gc, "trace": trace,
    "wide-inbox": wide_inbox, "short-yield": short_yield, "profile": profile,
    "statements": statements,
}


def apply(names: list[str]) -> None:
    """Patch the named experiments in, in order."""
    unknown = [n for n in names if n not in EXPERIMENTS]
    if unknown:
        raise SystemExit(f"unknown experiments: {', '.join(unknown)}; "
                         f"known: {', '.join(EXPERIMENTS)}")
    for name in names:
        EXPERIMENTS[name]()


def main(argv: list[str]) -> int:
    """`agentbot serve` with experiments: argv[0] is a comma-separated list of them."""
    apply([n for n in argv[0].split(",") if n] if argv else [])
    from bot.__main__ import main as agentbot

    return agentbot(["serve"])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
