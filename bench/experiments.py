"""Prototypes of intake changes, patched into a real `agentbot serve` to measure them first.

Not part of agentbot: each experiment replaces one piece of bot/ at start, so that its effect
can be measured with the same harness, on the same machine, before anyone rewrites the real
module. `python -m bench.experiments EXPERIMENT[,EXPERIMENT...]` starts `agentbot serve` with
them; `python -m bench.intake --experiment ...` does that for its agentbot rows.
"""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
from aiohttp import web
from sqlalchemy import DateTime

from bot import inbox, intake, store, webhook

# Constant statements: the intake's columns; the rest keep their defaults (NULL).
SQLITE_INSERT = (
    "INSERT INTO deliveries (delivery_id, event, action, installation_id, payload, "
    "received_at, status, attempts, next_attempt_at, done_handlers) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, '[]') ON CONFLICT (delivery_id) DO NOTHING"
)
# One statement, one round trip, one commit for the whole batch.
POSTGRES_INSERT = (
    "INSERT INTO deliveries (delivery_id, event, action, installation_id, payload, "
    "received_at, status, attempts, next_attempt_at, done_handlers) "
    "SELECT d, e, a, i, p, $6, $7, 0, $6, '[]'::json "
    "FROM unnest($1::varchar[], $2::varchar[], $3::varchar[], $4::bigint[], $5::bytea[]) "
    "AS t(d, e, a, i, p) ON CONFLICT (delivery_id) DO NOTHING"
)
# How long after the intake's last commit the dispatch worker keeps waiting.
INTAKE_QUIET_SECONDS = 0.05


class RawWriter:
    """Stores a batch with one hand-off to the driver instead of a SQLAlchemy round trip each
    for begin, execute and commit, and converts the timestamp once per batch, not per row."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.sqlite = engine.dialect.name == "sqlite"
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="delivery-writer")
        self._sqlite: sqlite3.Connection | None = None
        self._postgres: Any = None
        dialect = engine.dialect
        self._timestamp = DateTime(timezone=True).dialect_impl(dialect).bind_processor(dialect)
        self.last_commit = 0.0

    def _write_sqlite(self, rows: list[tuple[Any, ...]]) -> None:
        if self._sqlite is None:
            conn = sqlite3.connect(self.engine.url.database, isolation_level=None,
                                   check_same_thread=False, timeout=5)
            store._sqlite_pragmas(conn, None)  # the same pragmas as every other connection
            self._sqlite = conn
        self._sqlite.execute("BEGIN IMMEDIATE")
        try:
            self._sqlite.executemany(SQLITE_INSERT, rows)
            self._sqlite.execute("COMMIT")
        except BaseException:
            self._sqlite.execute("ROLLBACK")
            raise

    async def write(self, batch: list[intake.DeliveryRow]) -> None:
        """Commit the batch, ignoring ids already stored."""
        now = store.utcnow()
        pending = store.DeliveryStatus.PENDING.value
        if self.sqlite:
            ts = self._timestamp(now) if self._timestamp else now
            rows = [(r.delivery_id, r.event, r.action, r.installation_id, r.payload, ts,
                     pending, ts) for r in batch]
            await asyncio.get_running_loop().run_in_executor(self._thread,
                                                             self._write_sqlite, rows)
        else:
            if self._postgres is None:
                import asyncpg

                url = self.engine.url
                self._postgres = await asyncpg.connect(
                    host=url.host, port=url.port, user=url.username, password=url.password,
                    database=url.database)
            await self._postgres.execute(
                POSTGRES_INSERT, [r.delivery_id for r in batch], [r.event for r in batch],
                [r.action for r in batch], [r.installation_id for r in batch],
                [r.payload for r in batch], now, pending)
        self.last_commit = time.monotonic()

    async def close(self) -> None:
        if self._postgres is not None:
            await self._postgres.close()
        if self._sqlite is not None:
            conn, self._sqlite = self._sqlite, None
            await asyncio.get_running_loop().run_in_executor(self._thread, conn.close)
        self._thread.shutdown(wait=False)


_writers: list[RawWriter] = []


def raw_writer() -> None:
    """DeliveryWriter commits through RawWriter (same rows, same dedupe, same group commit)."""
    original_init, original_close = intake.DeliveryWriter.__init__, intake.DeliveryWriter.close

    def __init__(self: Any, engine: Any, on_stored: Callable[[], None] | None = None) -> None:
        original_init(self, engine, on_stored)
        self._raw = RawWriter(engine)
        _writers.append(self._raw)

    async def _commit(self: Any, batch: list[tuple[intake.DeliveryRow, Any]]) -> None:
        try:
            await self._raw.write([row for row, _ in batch])
        except Exception as exc:  # noqa: BLE001 - every waiter must hear of it
            error = intake.StoreUnavailable(type(exc).__name__)
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for _, future in batch:
            if not future.done():
                future.set_result(None)
        if self._on_stored is not None:
            self._on_stored()

    async def close(self: Any) -> None:
        await original_close(self)
        await self._raw.close()

    intake.DeliveryWriter.__init__ = __init__  # type: ignore[method-assign]
    intake.DeliveryWriter._commit = _commit  # type: ignore[method-assign]
    intake.DeliveryWriter.close = close  # type: ignore[method-assign]


def static_reply() -> None:
    """Reply bodies serialised once per (status, message), not once per request."""
    bodies: dict[tuple[int, str], bytes] = {}

    def _reply(status: int, message: str) -> web.Response:
        body = bodies.get((status, message))
        if body is None:
            body = bodies.setdefault((status, message), orjson.dumps({"message": message}))
        return web.Response(body=body, status=status, content_type="application/json")

    webhook._reply = _reply


def inbox_yield() -> None:
    """The dispatch worker waits while the intake committed in the last 50 ms (needs
    raw-writer, which records the commit times)."""
    original = inbox.Inbox.drain_once

    async def drain_once(self: Any) -> int:
        while any(time.monotonic() - w.last_commit < INTAKE_QUIET_SECONDS for w in _writers):
            self.alive_at = store.utcnow()
            await asyncio.sleep(INTAKE_QUIET_SECONDS)
        return await original(self)

    inbox.Inbox.drain_once = drain_once  # type: ignore[method-assign]


def no_inbox() -> None:
    """Measurement only: the dispatch worker never claims anything (isolates the intake)."""
    async def drain_once(self: Any) -> int:
        self.alive_at = store.utcnow()
        return 0

    inbox.Inbox.drain_once = drain_once  # type: ignore[method-assign]


def no_parse() -> None:
    """Measurement only, breaks the contract (400 for a body that is not a JSON object):
    the body is not parsed before the answer; shows what the parse costs."""
    parsed = {"action": "labeled", "installation": {"id": 49871203}}

    class Unparsed:
        JSONDecodeError = orjson.JSONDecodeError

        @staticmethod
        def loads(body: bytes) -> dict[str, Any]:
            return parsed

    webhook.orjson = Unparsed  # type: ignore[assignment]


EXPERIMENTS: dict[str, Callable[[], None]] = {
    "raw-writer": raw_writer, "static-reply": static_reply, "inbox-yield": inbox_yield,
    "no-inbox": no_inbox, "no-parse": no_parse,
}


def apply(names: list[str]) -> None:
    """Patch the named experiments in, in order."""
    unknown = [n for n in names if n not in EXPERIMENTS]
    if unknown:
        raise SystemExit(f"unknown experiments: {', '.join(unknown)}; "
                         f"known: {', '.join(EXPERIMENTS)}")
    if "inbox-yield" in names and "raw-writer" not in names:
        raise SystemExit("inbox-yield needs raw-writer")
    for name in names:
        EXPERIMENTS[name]()


def main(argv: list[str]) -> int:
    """`agentbot serve` with experiments: argv[0] is a comma-separated list of them."""
    apply([n for n in argv[0].split(",") if n] if argv else [])
    from bot.__main__ import main as agentbot

    return agentbot(["serve"])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
